"""One rule for every file foramflow reads: the memory it takes is capped before it is read.

A file of a few hundred kilobytes can claim gigabytes once decoded: a JSON file nested a
million deep, a zip member whose compressed bytes expand a thousandfold, an ``.npy`` header
claiming fifty million rows. The readers here learn the size a file will take in memory from
what it declares (its size on disk, a zip member's uncompressed size, an array's header),
refuse it when that is over a cap, and then read no more than they were promised, so that a
header that lies cannot take more either. Images follow the same rule in
:mod:`foramflow.io.images`.

Every refusal is a :class:`FileRefused` whose one-line message names the file (and the member
of a zip) and the problem.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from foramflow.errors import ForamflowError

MiB = 2**20

#: Most bytes of a JSON description (model.json, run.json): far more than any holds.
MAX_JSON_BYTES = 16 * MiB
#: Deepest nesting of lists and objects in a JSON description.
MAX_JSON_DEPTH = 64
#: Most bytes of one file of a bundle read into memory (a network in model.onnx).
MAX_MEMBER_BYTES = 512 * MiB
#: Most bytes of the arrays of one ``.npz`` file, all members together, once loaded.
MAX_ARRAY_BYTES = 256 * MiB
#: Most bytes of a CSV table the user gives (human counts, an age model, sample metadata).
MAX_TABLE_BYTES = 64 * MiB


class FileRefused(ForamflowError, ValueError):
    """A file that is too large once read, or whose content cannot be used as it is."""

    def __init__(self, where: str | Path, reason: str):
        self.where = str(where)
        self.reason = reason
        super().__init__(f"{where}: {reason}")


def _size(n_bytes: int) -> str:
    return f"{n_bytes / MiB:.4g} MiB" if n_bytes >= MiB else f"{n_bytes} bytes"


def check_size(where: str | Path, n_bytes: int, limit: int, what: str = "file") -> None:
    """Refuse ``n_bytes`` over ``limit`` before anything is read."""
    if n_bytes > limit:
        raise FileRefused(
            where, f"{what} of {_size(n_bytes)}, over the limit of {_size(limit)}; not read"
        )


def read_bytes(path: str | Path, *, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            check_size(path, _file_size(handle), limit, what)
            return bounded_read(handle, path, limit, what)
    except OSError as err:
        raise FileRefused(path, f"cannot read {what} ({err.strerror or err})") from None


def _file_size(handle: BinaryIO) -> int:
    handle.seek(0, io.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    return size


def bounded_read(handle: BinaryIO, where: str | Path, limit: int, what: str = "file") -> bytes:
    """Read to the end of ``handle``, refusing it once more than ``limit`` bytes came."""
    data = handle.read(limit + 1)
    check_size(where, len(data), limit, what)
    return data


# -- JSON ---------------------------------------------------------------------------------------


def parse_json(text: bytes | str, where: str | Path, *, what: str = "JSON") -> Any:
    """Parse a JSON document, refusing nesting deeper than :data:`MAX_JSON_DEPTH`."""
    check_size(where, len(text), MAX_JSON_BYTES, what)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FileRefused(where, f"not UTF-8 text, not {what}") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise FileRefused(where, f"{what} nested too deep; not read") from None
    except ValueError as err:
        raise FileRefused(where, f"invalid {what} ({err})") from None
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise FileRefused(
            where, f"{what} nested {depth} deep, over the limit of {MAX_JSON_DEPTH}; not read"
        )
    return data


def json_depth(data: Any) -> int:
    """The deepest nesting of lists and objects in parsed JSON (no recursion)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in value)
    return deepest


def read_json(path: str | Path, *, what: str = "JSON") -> Any:
    """A JSON file of at most :data:`MAX_JSON_BYTES`, parsed by :func:`parse_json`."""
    return parse_json(read_bytes(path, limit=MAX_JSON_BYTES, what=what), path, what=what)


def read_json_object(path: str | Path, *, what: str = "JSON") -> dict:
    """A JSON file that must hold an object."""
    data = read_json(path, what=what)
    if not isinstance(data, dict):
        raise FileRefused(path, f"{what} must hold an object, not {type(data).__name__}")
    return data


# -- zips -----------------------------------------------------------------------------------------


class CheckedZip:
    """A zip whose member names are unique (as full names and as file names) and whose
    members are read only up to their declared size and a cap."""

    def __init__(self, archive: zipfile.ZipFile, where: str | Path):
        self.archive = archive
        self.where = str(where)
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = Path(info.filename).name
            if name in self.members:
                raise FileRefused(where, f"the zip holds {name} twice; refused as ambiguous")
            self.members[name] = info

    def location(self, name: str) -> str:
        return f"{self.where} ({name})"

    def read(self, name: str, *, limit: int = MAX_MEMBER_BYTES) -> bytes:
        """The bytes of member ``name`` (by file name), capped before and during the read."""
        info = self.members.get(name)
        if info is None:
            raise FileRefused(self.where, f"the zip holds no {name}")
        where = self.location(name)
        check_size(where, info.file_size, limit, "member")
        try:
            with self.archive.open(info) as handle:
                return bounded_read(handle, where, min(limit, info.file_size), "member")
        except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as err:
            raise FileRefused(where, f"cannot read the zip member ({err})") from None


@contextlib.contextmanager
def open_zip(
    source: str | Path | bytes, where: str | Path | None = None, *, what: str = "zip"
) -> Iterator[CheckedZip]:
    """Open a zip file (a path, or its bytes) as a :class:`CheckedZip`."""
    where = where if where is not None else source
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        archive = zipfile.ZipFile(handle)
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise FileRefused(where, f"not a readable {what} ({err})") from None
    with archive:
        yield CheckedZip(archive, where)


# -- .npz ---------------------------------------------------------------------------------------


def read_npz(
    source: str | Path | bytes,
    where: str | Path,
    names: Sequence[str],
    *,
    limit: int = MAX_ARRAY_BYTES,
    what: str = "array file",
) -> dict[str, np.ndarray]:
    """The arrays ``names`` of an ``.npz`` file (a path or its bytes), no pickles.

    Each member's header is read first and the arrays' bytes (shape × item size, all
    together) capped before any is loaded.
    """
    if not isinstance(source, bytes):
        check_size(where, _path_size(source, where), limit, "file")
    with open_zip(source, where, what=what) as archive:
        headers = {}
        for name in names:
            member = archive.members.get(f"{name}.npy")
            if member is None:
                raise FileRefused(where, f"not a readable {what} (no array {name!r})")
            headers[name] = _npy_header(archive, member, where)
        total = sum(_array_bytes(shape, dtype) for shape, dtype in headers.values())
        check_size(where, total, limit, "arrays")
        arrays = {}
        for name in names:
            try:
                with archive.archive.open(archive.members[f"{name}.npy"]) as handle:
                    arrays[name] = np.lib.format.read_array(handle, allow_pickle=False)
            except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
                raise FileRefused(where, f"array {name!r} cannot be read ({err})") from None
    return arrays


def _path_size(path: str | Path, where) -> int:
    try:
        return Path(path).stat().st_size
    except OSError as err:
        raise FileRefused(where, f"cannot read ({err.strerror or err})") from None


def _npy_header(archive: CheckedZip, member: zipfile.ZipInfo, where) -> tuple[tuple, np.dtype]:
    name = member.filename
    try:
        with archive.archive.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise FileRefused(where, f"{name} is not a readable array ({err})") from None
    if dtype.hasobject:
        raise FileRefused(where, f"{name} holds Python objects; refused")
    return shape, dtype


def _array_bytes(shape: tuple, dtype: np.dtype) -> int:
    count = 1
    for extent in shape:
        count *= int(extent)
    return count * dtype.itemsize
