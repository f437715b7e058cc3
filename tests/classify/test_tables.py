"""The tables of a classification run as other tools read them: nulls for unknown values,
the depth's unit in its column name, one type whether or not a depth is known."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foramflow.classify.runner import RunMismatchError, classify_folder
from foramflow.classify.samples import SampleRule
from table_readers import duckdb_nulls, duckdb_types, no_spaces, polars_types


def run(bundle, images, out, **options):
    return classify_folder(bundle, images, out, workers=0, **options)


def test_depths_in_cm_give_depth_cm_columns_with_nulls_where_unknown(bundle, tree, tmp_path):
    table = tmp_path / "depths.csv"
    table.write_text("sample,depth_cm\nS1,30.5\nS2,\nS3,20\n")  # S2's depth is not known
    out = tmp_path / "out"
    run(bundle, tree, out, samples=SampleRule(table=str(table)))

    predictions = out / "predictions.parquet"
    schema = pq.read_schema(predictions)
    assert "depth" not in schema.names
    assert schema.field("depth_cm").type == pa.float64()
    assert duckdb_nulls(predictions, "depth_cm") == 5  # S2's five images
    manifest = out / "manifest.parquet"
    assert duckdb_types(manifest)["depth_cm"] == "DOUBLE"
    assert duckdb_nulls(manifest, "depth_cm") == 5
    assert json.loads((out / "run.json").read_text())["depth_unit"] == "cm"
    for name in ("counts.csv", "relative_abundance.csv"):
        assert duckdb_types(out / name)["depth_cm"] == "DOUBLE"
        assert polars_types(out / name)["depth_cm"] == "Float64"
        assert no_spaces(pd.read_csv(out / name).columns)
    counts = pd.read_csv(out / "counts.csv", index_col="sample")
    assert counts["depth_cm"].to_dict() == pytest.approx(
        {"S1": 30.5, "S2": float("nan"), "S3": 20}, nan_ok=True
    )


def test_without_depths_every_table_keeps_a_typed_depth_column(bundle, tree, tmp_path):
    out = tmp_path / "out"
    run(bundle, tree, out)
    predictions = out / "predictions.parquet"
    assert duckdb_types(predictions)["depth"] == "DOUBLE"
    assert duckdb_nulls(predictions, "depth") == 13
    assert duckdb_types(out / "counts.csv")["depth"] == "DOUBLE"
    assert polars_types(out / "relative_abundance.csv")["depth"] == "Float64"


def test_an_unreadable_image_has_null_scores_not_nan(kit, bundle, tree, tmp_path):
    (tree / "S1" / "corrupt.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    run(bundle, tree, out)
    predictions = out / "predictions.parquet"
    for column in ("score", *kit.prob_columns):
        assert duckdb_nulls(predictions, column) == 1
    assert polars_types(predictions)["score"] == "Float32"


def test_a_regex_group_names_the_unit(bundle, kit, tmp_path):
    images = kit.write_tree(tmp_path / "images", {"core_120": [kit.dark], "core_95": [kit.bright]})
    rule = SampleRule(regex=r"(?P<sample>core_(?P<depth_m>\d+))/")
    run(bundle, images, tmp_path / "out", samples=rule)
    frame = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert frame.set_index("sample")["depth_m"].to_dict() == {"core_120": 120.0, "core_95": 95.0}


def test_a_run_with_another_depth_unit_is_another_run(bundle, tree, tmp_path):
    table = tmp_path / "depths.csv"
    table.write_text("sample,depth_cm\nS1,1\nS2,2\nS3,3\n")
    run(bundle, tree, tmp_path / "out", samples=SampleRule(table=str(table)))
    table.write_text("sample,depth_m\nS1,1\nS2,2\nS3,3\n")
    with pytest.raises(RunMismatchError, match="depth_unit was cm, now m"):
        run(bundle, tree, tmp_path / "out", samples=SampleRule(table=str(table)))


def test_a_results_folder_written_before_units_is_still_complete(bundle, tree, tmp_path):
    """An earlier version wrote ``depth`` with NaN: the run is recognised as done."""
    out = tmp_path / "out"
    first = run(bundle, tree, out)
    path = out / "predictions.parquet"
    table = pq.read_table(path)
    nan = pa.array(np.full(table.num_rows, np.nan))  # NaN, as written before
    pq.write_table(table.set_column(table.schema.get_field_index("depth"), "depth", nan), path)
    assert duckdb_nulls(path, "depth") == 0
    again = run(bundle, tree, out)
    assert again.n_resumed == first.run.n_images
    pd.testing.assert_frame_equal(again.counts, first.counts)
