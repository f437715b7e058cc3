"""The stack and segment steps called from Python: results, reports and refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from foramflow.data.synthetic import make_slide, make_zstack
from foramflow.errors import ForamflowError
from foramflow.imaging.save import save_image
from foramflow.progress import Recorded

PIXELS_PER_MM = 200.0  # slides of 5 µm pixels


@pytest.fixture(scope="module")
def trays(tmp_path_factory):
    """Sample S1 with one slide of 5 particles, and an unreadable image in sample S2."""
    root = tmp_path_factory.mktemp("trays")
    slide = make_slide(n_particles=5, pixel_size_um=1000 / PIXELS_PER_MM, seed=3)
    save_image(root / "S1" / "tray.png", slide.image)
    (root / "S2").mkdir()
    (root / "S2" / "broken.png").write_bytes(b"not an image")
    return root, slide.truth


def test_segment_folder_returns_what_it_wrote_and_what_it_left_out(trays, tmp_path):
    from foramflow.imaging.steps import segment_folder

    root, truth = trays
    progress = Recorded()
    result = segment_folder(
        root, tmp_path / "crops", pixels_per_mm=PIXELS_PER_MM, progress=progress
    )
    assert len(result.particles) == len(truth)
    assert result.segmented == [root / "S1" / "tray.png"]
    assert list(result.failed) == [root / "S2" / "broken.png"]
    assert "broken.png" in result.failed[root / "S2" / "broken.png"]
    assert result.written == [
        tmp_path / "crops" / name
        for name in ("morphometrics.parquet", "morphometrics.csv", "rejected.csv")
    ]
    written = pd.read_parquet(result.written[0])
    pd.testing.assert_frame_equal(written, result.particles)
    assert (written["sample"] == "S1").all() and (written["pixels_per_mm"] == PIXELS_PER_MM).all()
    assert any(f"S1/tray.png: {len(truth)} particles" in m for m in progress.messages)


def test_segment_folder_says_when_every_region_is_too_small(trays, tmp_path):
    from foramflow.imaging.steps import segment_folder

    root, truth = trays
    result = segment_folder(root / "S1", tmp_path / "crops", min_area_um2=1e9)
    assert result.particles.empty and result.all_too_small is not None
    assert result.all_too_small.images == 1 and result.all_too_small.regions == len(truth)
    assert result.all_too_small.describe().startswith(
        "in 1 image(s) every region was dropped as smaller than 1e+09 µm² at 1159.4 pixels per mm"
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"threshold": 7}, r"threshold must be 'auto' or a level in \[0, 1\]"),
        ({"image_format": "bmp"}, "crops are written as png, jpg, tif, not 'bmp'"),
    ],
)
def test_segment_folder_refuses_bad_settings_without_naming_command_options(
    trays, tmp_path, options, message
):
    from foramflow.imaging.steps import segment_folder

    root, _ = trays
    with pytest.raises(ForamflowError, match=message) as caught:
        segment_folder(root, tmp_path / "crops", **options)
    assert isinstance(caught.value, ValueError) and "--" not in str(caught.value)
    assert not (tmp_path / "crops").exists()


def test_segment_folder_refuses_a_missing_folder(tmp_path):
    from foramflow.imaging.steps import segment_folder

    with pytest.raises(ForamflowError, match="nowhere: no such file or folder"):
        segment_folder(tmp_path / "nowhere", tmp_path / "crops")


def test_stack_folder_fuses_each_stack_and_lists_the_bad_one(tmp_path):
    from foramflow.imaging.steps import stack_folder

    stack = make_zstack(n_particles=2, pixel_size_um=5.0, seed=0)
    for i, plane in enumerate(stack.planes):
        save_image(tmp_path / "stacks" / "good" / f"plane_{i:02d}.png", plane)
    for name, size in (("plane_00.png", 32), ("plane_01.png", 40)):
        save_image(tmp_path / "stacks" / "bad" / name, np.zeros((size, size)))
    result = stack_folder(tmp_path / "stacks", tmp_path / "fused", plane_spacing_um=70)
    assert [report["fused"] for report in result.fused] == [str(tmp_path / "fused" / "good.png")]
    assert list(result.failed) == [tmp_path / "stacks" / "bad"]
    assert "plane_01.png" in result.failed[tmp_path / "stacks" / "bad"]
    assert len(pd.read_csv(result.summary)) == 1
    assert (tmp_path / "fused" / "good.depth-um.tif").is_file()


def test_stack_folder_refuses_a_folder_without_stacks(tmp_path):
    from foramflow.imaging.steps import stack_folder

    (tmp_path / "empty").mkdir()
    with pytest.raises(ForamflowError, match="no folder with two or more images"):
        stack_folder(tmp_path / "empty", tmp_path / "fused")
    assert not (tmp_path / "fused").exists()
