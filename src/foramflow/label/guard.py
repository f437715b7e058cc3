"""Who may talk to the labelling app, from which page, and how much they may send.

* Host: without a token the app answers only requests whose ``Host`` is a loopback name
  (``localhost``, 127.0.0.0/8, ``::1``), which keeps DNS-rebinding pages out; the CLI
  serves without a token exactly on such addresses (:func:`is_loopback_name`).
* Origin: a state-changing request (POST, PUT, PATCH, DELETE) is refused when the browser
  says it comes from another origin: an ``Origin`` (including ``null``), or else a
  ``Referer``, whose host and port are not the request's own ``Host``, or else a
  ``Sec-Fetch-Site`` other than ``same-origin`` or ``none``. Requests that carry none of
  the three do not come from a web page (scripts, curl) and pass; where a token is
  required they still need it. Browsers send ``Origin`` with every cross-origin POST, so
  a form or script on any other page cannot change the labels.
* Size: :class:`BodyLimit` refuses bodies over :data:`MAX_BODY_BYTES` with 413, by
  ``Content-Length`` and by counting the bytes that arrive; a label change may name at
  most :data:`MAX_IDS_PER_REQUEST` images.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from urllib.parse import urlsplit

MAX_BODY_BYTES = 1 << 20
MAX_IDS_PER_REQUEST = 10_000
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAME_SITE_FETCHES = ("same-origin", "none")


def is_loopback_name(host: str) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The host of a ``Host`` header without its port: ``[::1]:8765`` gives ``::1``."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else ""
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def foreign_origin(headers: Mapping[str, str]) -> str | None:
    """The other origin a browser says the request comes from; None for the app's own."""
    own = (headers.get("host") or "").lower()
    origin = headers.get("origin")
    if origin is not None:
        return None if _netloc(origin) == own else origin
    referer = headers.get("referer")
    if referer is not None:
        return None if _netloc(referer) == own else referer
    site = headers.get("sec-fetch-site")
    if site is not None and site not in SAME_SITE_FETCHES:
        return f"a {site} page"
    return None


def _netloc(url: str) -> str | None:
    """``host[:port]`` of an http(s) URL, lowercased; None for anything else (``null``)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.netloc.lower()


class BodyLimit:
    """ASGI middleware: answer 413 to a request body over ``max_bytes``.

    The body is read here (at most ``max_bytes``) before the app sees the request, so
    neither a false ``Content-Length`` nor a chunked upload gets past the limit.
    """

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, send) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes, refused"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive):
    """A ``receive`` that gives the app the whole body once, then waits on the client."""
    delivered = False

    async def replay():
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
