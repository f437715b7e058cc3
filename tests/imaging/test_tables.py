"""The segment step's tables as other tools read them: a measure that cannot be taken
(thickness without a depth map) is a null in Parquet and a number column in CSV."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foramflow.data.synthetic import make_slide
from foramflow.imaging.save import save_image
from table_readers import duckdb_nulls, duckdb_types, no_spaces, polars_types

PIXELS_PER_MM = 200.0


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Segmented crops of one slide of 4 particles, without a depth map."""
    from foramflow.imaging.steps import segment_folder

    root = tmp_path_factory.mktemp("tray")
    slide = make_slide(n_particles=4, pixel_size_um=1000 / PIXELS_PER_MM, seed=5)
    save_image(root / "S1" / "tray.png", slide.image)
    out = tmp_path_factory.mktemp("crops")
    result = segment_folder(root, out, pixels_per_mm=PIXELS_PER_MM)
    assert len(result.particles) == 4
    return out


def test_thickness_without_a_depth_map_is_a_typed_null(crops):
    path = crops / "morphometrics.parquet"
    assert pq.read_schema(path).field("thickness_um").type == pa.float64()
    assert duckdb_nulls(path, "thickness_um") == 4
    assert duckdb_types(path)["thickness_um"] == "DOUBLE"


def test_the_csv_types_every_measure_as_a_number(crops):
    path = crops / "morphometrics.csv"
    duck, polar = duckdb_types(path), polars_types(path)
    assert duck["thickness_um"] == "DOUBLE" and polar["thickness_um"] == "Float64"
    assert duck["area_um2"] == "DOUBLE" and polar["area_um2"] == "Float64"
    assert no_spaces(duck)
