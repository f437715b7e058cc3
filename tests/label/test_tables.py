"""The label project's CSV as other tools read it, and sample-depth files with their unit."""

from __future__ import annotations

from pathlib import Path

import pytest

from foramflow.label import export
from foramflow.label.store import LabelStore
from table_readers import duckdb_nulls, duckdb_types, no_spaces, polars_types


def test_unknown_depths_and_scores_stay_number_columns(image_root: Path, tmp_path: Path):
    store = LabelStore(tmp_path / "project")
    store.add_images(image_root, depth_pattern="")  # no depth known, nothing predicted
    path = tmp_path / "labels.csv"
    assert export.export_labels_csv(store, path) == 12
    duck, polar = duckdb_types(path), polars_types(path)
    for column in ("depth_cm", "pred_score"):
        assert duck[column] == "DOUBLE" and polar[column] == "Float64"
    assert duckdb_nulls(path, "validated_by") == 12  # unknown text: an empty cell
    assert no_spaces(duck)


def test_the_exported_depths_and_scores_read_back(store: LabelStore, tmp_path: Path):
    store.set_predictions([(1, "dark", 0.9, 0.8)], model="m1")
    path = tmp_path / "labels.csv"
    export.export_labels_csv(store, path)
    duckdb = pytest.importorskip("duckdb")
    known = duckdb.sql(
        f"SELECT count(*) FROM '{path}' WHERE pred_score = 0.9 AND depth_cm IN (10, 20)"
    ).fetchall()
    assert known == [(1,)]


def test_a_sample_depth_file_in_metres_is_converted_and_nan_is_unknown(
    image_root: Path, tmp_path: Path
):
    metadata = tmp_path / "samples.csv"
    metadata.write_bytes("\ufeffsample,depth_m\nS1_10cm,0.105\nS2_20cm,NaN\n".encode())
    store = LabelStore(tmp_path / "project")
    store.add_images(image_root, metadata_csv=metadata, depth_pattern="")
    depths = {row["sample"]: row["depth_cm"] for row in store.all_rows()}
    assert depths["S1_10cm"] == pytest.approx(10.5)
    assert depths["S2_20cm"] is None


def test_a_sample_depth_file_in_another_unit_is_refused(image_root: Path, tmp_path: Path):
    metadata = tmp_path / "samples.csv"
    metadata.write_text("sample,depth_ft\nS1_10cm,1\n")
    with pytest.raises(ValueError, match=r"samples\.csv: depth column 'depth_ft'"):
        LabelStore(tmp_path / "project").add_images(image_root, metadata_csv=metadata)
