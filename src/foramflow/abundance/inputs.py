"""Reading the user's CSV tables (human counts, age models) with errors that name the file.

pandas reports an empty file as "No columns to parse from file" and a binary one as a codec
error, without the file's name; :func:`read_csv_table` says which file and what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from foramflow.errors import ForamflowError
from foramflow.io.limits import MAX_TABLE_BYTES, FileRefused, check_size

FIRST_DATA_LINE = 2  # line 1 holds the header
_SNIFF_BYTES = 8192


class AbundanceError(ForamflowError, ValueError):
    """An abundance input or setting that would give a wrong or silent result."""


def read_csv_table(path: str | Path, what: str) -> pd.DataFrame:
    """Read a CSV table with a header row; ``what`` names its role in messages.

    The index holds each row's line number in the file, so that a message can point at it;
    blank lines are skipped without shifting the numbers.
    """
    path = Path(path)
    head = _first_bytes(path, what)
    try:
        check_size(path, path.stat().st_size, MAX_TABLE_BYTES, f"a table of {what}")
    except FileRefused as err:
        raise AbundanceError(str(err)) from None
    if not head.strip():
        raise AbundanceError(f"{path}: empty file, expected a CSV table of {what}")
    if b"\0" in head:
        raise AbundanceError(f"{path}: a binary file, not a CSV table of {what}")
    try:
        table = pd.read_csv(path, skip_blank_lines=False)
    except UnicodeDecodeError as err:
        raise AbundanceError(f"{path}: not UTF-8 text, not a CSV table of {what}") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = str(err).strip().splitlines()[0]
        raise AbundanceError(f"{path}: not a readable CSV table of {what} ({reason})") from err
    table = table.dropna(how="all")
    table.index = table.index + FIRST_DATA_LINE
    return table


def _first_bytes(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(_SNIFF_BYTES)
    except OSError as err:
        raise AbundanceError(f"{path}: cannot read {what} ({err.strerror})") from err
