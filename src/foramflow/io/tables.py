"""How foramflow writes tables, so that pandas, pyarrow, duckdb, polars, R and spreadsheets
read them alike.

* An unknown value is a null in Parquet (a NaN is a number to SQL: ``IS NULL`` misses it).
  In CSV, which has no typed null, an unknown number is written ``NaN``: an empty cell
  makes a column with no known value a text column for duckdb's and polars' type
  sniffers, ``NaN`` keeps it a number column for every reader (pandas and R read it as
  missing, duckdb and polars as not-a-number). Unknown text is an empty cell.
* A column keeps its type whether or not any value is known (float64 for a depth).
* The depth of a sample carries its unit in its column name, ``depth_<unit>``
  (``depth_m``, ``depth_cm``, ``depth_mbsf``; :data:`DEPTH_UNITS`); ``depth`` alone means
  that no unit was stated. Readers accept either and take the unit from the name.
* Column names that foramflow chooses hold no spaces (``sample_order``); a column named
  after a class (``prob_<label>``, a count per class) keeps the label as written.
* CSV files are UTF-8 without a byte-order mark (Python's csv module and R's read.csv
  would take one for part of the first column's name), comma-separated, with a header.

Inside foramflow a table's depth column is always called ``depth`` and its unit travels
beside it; :func:`depth_column` names it on the way out, :func:`find_depth_column` finds
it on the way in.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from foramflow.errors import ForamflowError
from foramflow.io.files import atomic_write

DEPTH = "depth"
CSV_UNKNOWN_NUMBER = "NaN"
DEPTH_UNITS = ("m", "cm", "mm", "um", "ft", "mbsf", "cmbsf", "mcd", "rmcd", "ccsf", "mbsl")
"""Units a depth column may name: lengths, and the depth scales of ocean drilling (metres
below sea floor, metres composite depth, core composite depth below sea floor, ...).
Other suffixes (``depth_top``) leave a column an ordinary one."""


class TableError(ForamflowError, ValueError):
    """A table or a setting that breaks the table rules (an unknown unit, two depths)."""


def check_unit(unit: str | None, where: str = "depth unit") -> str | None:
    """``unit`` in lower case when it is one of :data:`DEPTH_UNITS`; None stays None."""
    if unit is None:
        return None
    text = str(unit).strip().lower()
    if text not in DEPTH_UNITS:
        raise TableError(f"{where}: {unit!r} is not a depth unit ({', '.join(DEPTH_UNITS)})")
    return text


def depth_column(unit: str | None) -> str:
    """``depth_<unit>``, or ``depth`` when no unit is stated."""
    return DEPTH if unit is None else f"{DEPTH}_{check_unit(unit)}"


def is_depth_column(column) -> bool:
    """``depth`` or ``depth_<unit>``, in any case."""
    name = str(column).strip().lower()
    return name == DEPTH or (name.startswith(f"{DEPTH}_") and name[len(DEPTH) + 1 :] in DEPTH_UNITS)


def depth_unit(column: str) -> str | None:
    """The unit that a depth column's name states (``depth_cm`` → ``cm``), None for ``depth``."""
    if not is_depth_column(column):
        raise TableError(f"{column!r} is not a depth column")
    return str(column).strip().lower()[len(DEPTH) + 1 :] or None


def find_depth_column(columns, where: str | Path) -> str | None:
    """The one depth column among ``columns`` (None when there is none); two are refused."""
    found = [c for c in columns if is_depth_column(c)]
    if len(found) > 1:
        raise TableError(f"{where}: more than one depth column ({', '.join(map(str, found))})")
    return found[0] if found else None


def unknown_as_null(table: pa.Table) -> pa.Table:
    """``table`` with every NaN of its floating-point columns made a null."""
    columns = []
    for column in table.columns:
        if pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


def parquet_table(frame: pd.DataFrame) -> pa.Table:
    """A data frame as an Arrow table by the rules: unknown values null, and a column of
    Python objects that are all unknown typed as text rather than as Arrow's null type."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [
        field.with_type(pa.string()) if pa.types.is_null(field.type) else field
        for field in table.schema
    ]
    return unknown_as_null(table.cast(pa.schema(fields, metadata=table.schema.metadata)))


def write_parquet(table: pd.DataFrame | pa.Table, path: str | Path) -> None:
    """Write a Parquet file whole or not at all, unknown values as nulls."""
    if isinstance(table, pd.DataFrame):
        table = parquet_table(table)
    else:
        table = unknown_as_null(table)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def to_csv(frame: pd.DataFrame, path: str | Path, *, index: bool = False) -> None:
    """Write ``frame`` as CSV by the rules (see the module's description)."""
    if index:
        frame = frame.reset_index()
    text_columns = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
    if text_columns:
        frame = frame.copy()
        for column in text_columns:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), "")
    frame.to_csv(
        path, index=False, na_rep=CSV_UNKNOWN_NUMBER, lineterminator="\n", encoding="utf-8"
    )


def write_csv(frame: pd.DataFrame, path: str | Path, *, index: bool = False) -> None:
    """Write a CSV file by the rules, whole or not at all."""
    atomic_write(path, lambda tmp: to_csv(frame, tmp, index=index))
