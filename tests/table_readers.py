"""A written table as other tools see it: the column types duckdb and polars infer, and the
nulls they count, so that tests check what a user of those tools would get."""

from __future__ import annotations

from pathlib import Path

import pytest


def duckdb_types(path: Path) -> dict[str, str]:
    """Column → duckdb type of a CSV (its sniffer) or Parquet file."""
    duckdb = pytest.importorskip("duckdb")
    relation = duckdb.sql(f"SELECT * FROM '{path}'")
    return dict(zip(relation.columns, map(str, relation.dtypes), strict=True))


def duckdb_nulls(path: Path, column: str) -> int:
    """Rows where ``column IS NULL``, as duckdb counts them."""
    duckdb = pytest.importorskip("duckdb")
    return duckdb.sql(f"SELECT count(*) FROM '{path}' WHERE \"{column}\" IS NULL").fetchall()[0][0]


def polars_types(path: Path) -> dict[str, str]:
    """Column → polars type of a CSV (its schema inference) or Parquet file."""
    polars = pytest.importorskip("polars")
    frame = polars.read_csv(path) if path.suffix == ".csv" else polars.read_parquet(path)
    return {name: str(dtype) for name, dtype in frame.schema.items()}


def no_spaces(columns) -> bool:
    return not any(" " in str(column) for column in columns)
