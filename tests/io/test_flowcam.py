"""FlowCam exports: collages written here with known particles are cut back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flowcam_exports import FIELDS, known_export, write_export
from foramflow.io.flowcam import FlowCamError, read_lst, split_collages


def test_every_particle_is_cut_exactly(tmp_path: Path):
    export, particles, truth = known_export(tmp_path / "S1_10cm")
    listed = read_lst(export / "run.lst")
    assert [(p.collage, p.x, p.y, p.width, p.height) for p in listed] == [
        (p["collage_file"], p["image_x"], p["image_y"], p["image_w"], p["image_h"])
        for p in particles
    ]
    written = split_collages(export, tmp_path / "crops")
    assert len(written) == len(truth) == 5
    assert {p.parent.name for p in written} == {"S1_10cm"}  # the export folder is the sample
    for number, pixels in truth.items():
        crop = np.asarray(Image.open(tmp_path / "crops" / "S1_10cm" / f"{number:06d}.png"))
        np.testing.assert_array_equal(crop, pixels)


def test_a_missing_collage_is_named_with_its_line(tmp_path: Path):
    export, _, _ = known_export(tmp_path / "S1")
    (export / "run_000002.tif").unlink()
    with pytest.raises(FlowCamError, match=r"run\.lst: line 13: collage run_000002\.tif not"):
        split_collages(export, tmp_path / "crops")
    assert not list((tmp_path / "crops").rglob("*.png"))


def test_a_box_outside_its_collage_is_refused_before_any_crop(tmp_path: Path):
    export, particles, _ = known_export(tmp_path / "S1")
    particles[4]["image_x"] = 60  # 60 + 40 > 90
    write_export(export, particles, {})
    with pytest.raises(FlowCamError, match=r"run\.lst: line 14: box 60,40,40×50 is outside"):
        split_collages(export, tmp_path / "crops")
    assert not list((tmp_path / "crops").rglob("*.png"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("016\n", r"line 2: expected 'num-fields\|N'"),
        ("016\nnum-fields|x\n", "line 2: the number of fields is not a number"),
        ("016\nnum-fields|9\nid|int32\n", "line 2: 9 fields announced"),
        ("016\nnum-fields|1\nid|int32\n1\n", "line 2: no field collage_file"),
        ("016\nnum-fields|2\nid\ncollage_file|string\n", r"line 3: expected 'name\|type'"),
    ],
)
def test_a_malformed_header_names_file_and_line(tmp_path: Path, text: str, message: str):
    (tmp_path / "bad.lst").write_text(text)
    with pytest.raises(FlowCamError, match=rf"bad\.lst: {message}"):
        read_lst(tmp_path / "bad.lst")


@pytest.mark.parametrize(
    "row, message",
    [
        ("1|a.tif|0|0|5", "line 10: 5 values, the header names 7"),
        ("1|a.tif|0|0|5|x|1", "line 10: the particle's box is not whole numbers"),
        ("1|a.tif|0|0|0|5|1", "line 10: empty or negative box"),
        ("1|../a.tif|0|0|5|5|1", "line 10: collage '../a.tif' is not a file name"),
        ("x|a.tif|0|0|5|5|1", "line 10: particle id 'x' is not a number"),
        ("1|a.tif|0|0|5|5|1\n1|a.tif|0|0|5|5|1", "line 11: particle id 1 listed twice"),
    ],
)
def test_a_malformed_particle_line_names_file_and_line(tmp_path: Path, row: str, message: str):
    header = ["016", f"num-fields|{len(FIELDS)}", *(f"{n}|int32" for n in FIELDS)]
    (tmp_path / "bad.lst").write_text("\n".join([*header, row]) + "\n")
    with pytest.raises(FlowCamError, match=rf"bad\.lst: {message}"):
        read_lst(tmp_path / "bad.lst")


def test_a_folder_without_one_lst_file_is_refused(tmp_path: Path):
    with pytest.raises(FlowCamError, match=r"no \.lst file"):
        split_collages(tmp_path, tmp_path / "out")
