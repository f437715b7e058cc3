"""Atomic file writes that leave files readable as the user's umask says.

``tempfile.mkstemp`` creates files with mode 0600 whatever the umask, so a result
renamed into place from it would be unreadable by colleagues. Every atomic write goes
through :func:`atomic_write`, which gives the file the mode a plain ``open`` would.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from foramflow.errors import OutputError


def umask_mode(base: int = 0o666) -> int:
    """The mode a newly created file gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


@contextlib.contextmanager
def atomic_path(target: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file gets the umask's mode. With ``durable`` the data and the folder
    entry are flushed to disk before returning. On an error the temporary file is removed
    and ``target`` is left as it was.
    """
    target = Path(target)
    with naming_the_file(target):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with naming_the_file(target):
            os.chmod(tmp_path, umask_mode())
            yield tmp_path
            if durable:
                fsync_file(tmp_path)
            os.replace(tmp_path, target)
            if durable:
                fsync_dir(target.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def naming_the_file(path: str | Path) -> Iterator[None]:
    """Give an OSError raised in the block the file name it lacks.

    A full disk or a lost network share fails a write with no file name attached, and the
    user is then told only "No space left on device"; this names the file being written.
    """
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err


def prepare_output_dir(path: str | Path) -> Path:
    """Create an output folder (and its parents) and make sure files can be written in it.

    Raises :class:`OutputError` when the path is a file, the folder cannot be created, or a
    file cannot be created in it. The last is tried with a real file, since permission bits
    do not tell (root ignores them; a read-only mount or a full quota overrides them).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path}: cannot create the folder ({_reason(err, path)})") from err
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".foramflow-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{path}: cannot write in this folder ({err.strerror})") from err
    return path


def _reason(err: OSError, path: Path) -> str:
    """The error's reason, with the file it concerns when that is not ``path`` itself."""
    if err.filename is not None and Path(err.filename) != path:
        return f"{err.filename}: {err.strerror}"
    return str(err.strerror)


def atomic_write(target: str | Path, write: Callable[[Path], None], *, durable=False) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``target`` atomically."""
    with atomic_path(target, durable=durable) as tmp:
        write(tmp)


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""

    def write(tmp: Path) -> None:
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=False)
            handle.write("\n")

    atomic_write(path, write)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
