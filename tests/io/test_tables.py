import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foramflow.errors import ForamflowError
from foramflow.io.tables import (
    depth_column,
    depth_unit,
    find_depth_column,
    unknown_as_null,
    write_csv,
    write_parquet,
)
from table_readers import duckdb_nulls, duckdb_types, polars_types


def test_the_depth_column_names_its_unit_and_reads_back():
    assert depth_column("cm") == "depth_cm"
    assert depth_column(None) == "depth"
    assert depth_unit("depth_mbsf") == "mbsf"
    assert depth_unit("Depth") is None
    assert find_depth_column(["sample", "depth_m", "n"], "t.csv") == "depth_m"
    assert find_depth_column(["sample", "n"], "t.csv") is None


@pytest.mark.parametrize("unit", ["c m", "m/s", "", "top", "metres"])
def test_a_unit_that_is_not_a_depth_unit_is_refused(unit):
    with pytest.raises(ForamflowError, match="is not a depth unit"):
        depth_column(unit)


def test_other_suffixes_leave_a_column_an_ordinary_one():
    assert find_depth_column(["sample", "depth_top", "depth_bottom"], "t.csv") is None
    assert find_depth_column(["sample", "depth_top", "Depth_MBSF"], "t.csv") == "Depth_MBSF"
    assert depth_unit("Depth_MBSF") == "mbsf"


def test_two_depth_columns_are_refused_naming_the_file():
    with pytest.raises(ForamflowError, match=r"t\.csv: more than one depth column"):
        find_depth_column(["depth", "depth_cm"], "t.csv")


def test_nan_becomes_null_and_the_type_stays():
    table = pa.table({"x": pa.array([1.0, math.nan], pa.float32()), "s": ["a", "b"]})
    nulled = unknown_as_null(table)
    assert nulled.schema == table.schema
    assert nulled["x"].null_count == 1
    assert nulled["x"].to_pylist() == [1.0, None]


def _frame(depths):
    return pd.DataFrame(
        {
            "sample": ["é1", "S2"],
            "depth_cm": pd.Series(depths, dtype="float64"),
            "note": [None, "x"],
        }
    )


def test_an_all_unknown_depth_is_a_typed_null_column_in_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet(_frame([np.nan, np.nan]), path)
    assert pq.read_schema(path).field("depth_cm").type == pa.float64()
    assert duckdb_types(path)["depth_cm"] == "DOUBLE"
    assert duckdb_nulls(path, "depth_cm") == 2
    assert polars_types(path)["depth_cm"] == "Float64"


@pytest.mark.parametrize("depths", [[np.nan, np.nan], [np.nan, 12.5]])
def test_csv_numbers_stay_numbers_whether_or_not_a_value_is_known(tmp_path, depths):
    path = tmp_path / "t.csv"
    write_csv(_frame(depths), path)
    assert duckdb_types(path)["depth_cm"] == "DOUBLE"
    assert polars_types(path)["depth_cm"] == "Float64"
    back = pd.read_csv(path, keep_default_na=False, na_values=["NaN"])
    assert back["depth_cm"].isna().tolist() == [math.isnan(d) for d in depths]
    assert back["note"].tolist() == ["", "x"]  # unknown text: an empty cell
    assert path.read_bytes().startswith(b"sample,")  # UTF-8 without a byte-order mark
    assert back["sample"][0] == "é1"
