"""Who else has the project open: one user at a time, said plainly rather than enforced.

Every page posts a heartbeat to ``/api/presence``; the browser is known by a random session
cookie. The heartbeats live in ``PROJECT_DIR/sessions.json``, so that two servers started
on the same project see each other's users. A session heard from in the last
:data:`ACTIVE_S` seconds counts as open; the answer lists the other open sessions, each
with the time it was first seen.
"""

from __future__ import annotations

import re
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Request, Response

from foramflow.label.jobs import read_json, write_json

SESSION_COOKIE = "foramflow_session"
SESSIONS_FILE = "sessions.json"
ACTIVE_S = 60.0
#: Sessions kept at most, the most recent, so scripts without cookies cannot grow the file.
MAX_SESSIONS = 50
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


class Presence:
    """The open sessions of one project."""

    def __init__(self, project_dir: str | Path):
        self.path = Path(project_dir) / SESSIONS_FILE
        self.lock = threading.Lock()

    def beat(self, session: str, now: datetime | None = None) -> list[dict]:
        """Note ``session`` as open now; the other open sessions, longest open first."""
        now = now or datetime.now(UTC)
        with self.lock:
            open_ = {
                key: seen
                for key, seen in read_json(self.path).items()
                if SESSION_ID.match(key) and _age(seen.get("last"), now) < ACTIVE_S
            }
            since = open_.get(session, {}).get("since") or now.isoformat(timespec="seconds")
            open_[session] = {"since": since, "last": now.isoformat(timespec="seconds")}
            kept = sorted(open_.items(), key=lambda item: item[1]["last"])[-MAX_SESSIONS:]
            write_json(self.path, dict(kept))
        others = [seen for key, seen in kept if key != session]
        return [{"since": seen["since"]} for seen in sorted(others, key=lambda s: s["since"])]


def _age(stamp: str | None, now: datetime) -> float:
    try:
        return (now - datetime.fromisoformat(stamp)).total_seconds()
    except (TypeError, ValueError):
        return float("inf")


def presence_router(project_dir: str | Path) -> APIRouter:
    presence = Presence(project_dir)
    router = APIRouter()

    @router.post("/api/presence")
    def heartbeat(request: Request, response: Response) -> dict:
        """This browser is here; which other sessions have the project open, since when."""
        session = request.cookies.get(SESSION_COOKIE, "")
        if not SESSION_ID.match(session):
            session = secrets.token_hex(16)
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict")
        return {"others": presence.beat(session)}

    return router
