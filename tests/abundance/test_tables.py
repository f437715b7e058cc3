"""The abundance tables as other tools read them: the depth's unit in its column name, taken
from where it was stated; number columns typed whether or not a depth is known; no spaces."""

import numpy as np
import pandas as pd
import pytest

from abundance.conftest import rows
from foramflow.abundance.steps import estimate_abundance
from foramflow.errors import ForamflowError
from table_readers import duckdb_types, no_spaces, polars_types


def _predictions(results, make_predictions, *, depth_column="depth", depths=True):
    table = make_predictions(rows())
    if not depths:
        table["depth"] = np.nan
    table.rename(columns={"depth": depth_column}).to_parquet(results / "predictions.parquet")


def test_depths_in_cm_stay_depth_cm_in_abundance_csv(results, make_predictions, tmp_path):
    _predictions(results, make_predictions, depth_column="depth_cm")
    result = estimate_abundance(results, tmp_path / "out", bootstrap=5)
    assert result.analysis.axis_label == "depth (cm)"
    path = tmp_path / "out" / "abundance.csv"
    assert duckdb_types(path)["depth_cm"] == "DOUBLE"
    table = pd.read_csv(path)
    assert "depth" not in table.columns
    assert set(table.groupby("sample")["depth_cm"].first().items()) == {("s0", 1.0), ("s1", 2.0)}


def test_no_known_depth_gives_typed_columns_without_spaces(results, make_predictions, tmp_path):
    _predictions(results, make_predictions, depths=False)
    result = estimate_abundance(results, tmp_path / "out", bootstrap=5)
    path = tmp_path / "out" / "abundance.csv"
    assert duckdb_types(path)["depth"] == "DOUBLE"
    assert polars_types(path)["depth"] == "Float64"
    assert duckdb_types(path)["sample_order"] == "DOUBLE"
    for written in result.written:
        if written.suffix == ".csv":
            assert no_spaces(pd.read_csv(written).columns), written


def test_a_folder_written_before_units_takes_the_unit_given(results, tmp_path):
    """``results`` holds predictions as classify wrote them before: ``depth``, no unit."""
    estimate_abundance(results, tmp_path / "out", bootstrap=5, depth_unit="m")
    assert "depth_m" in pd.read_csv(tmp_path / "out" / "abundance.csv").columns


def test_the_unit_of_the_human_counts_names_the_depth_column(results, tmp_path):
    human = tmp_path / "human.csv"
    human.write_text("sample,depth_cm,dark,mid,bright\ns0,1.0,8,6,6\ns1,2.0,7,7,6\n")
    estimate_abundance(results, tmp_path / "out", bootstrap=5, human=human)
    assert "depth_cm" in pd.read_csv(tmp_path / "out" / "abundance.csv").columns


def test_units_that_disagree_are_refused_before_writing(results, make_predictions, tmp_path):
    _predictions(results, make_predictions, depth_column="depth_cm")
    with pytest.raises(ForamflowError, match=r"different units \(the depth unit given: m; the "):
        estimate_abundance(results, tmp_path / "out", bootstrap=5, depth_unit="m")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ForamflowError, match="'metres' is not a depth unit"):
        estimate_abundance(results, tmp_path / "out", bootstrap=5, depth_unit="metres")
