"""The stack and segment commands end to end, on generated stacks and slides."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from foramflow.cli import app
from foramflow.data.synthetic import make_slide, make_zstack
from foramflow.imaging.save import save_image
from foramflow.io.images import read_image

PIXEL_SIZE_UM = 5.0
PIXELS_PER_MM = 1000.0 / PIXEL_SIZE_UM


def run(*args):
    """Invoke foramflow; returns the result and its output without any white space (the
    console wraps long paths)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, "".join(result.output.split())


@pytest.fixture(scope="module")
def zstack():
    return make_zstack(n_particles=3, pixel_size_um=PIXEL_SIZE_UM, seed=0)


def save_planes(stack, folder):
    paths = [folder / f"plane_{i:02d}.png" for i in range(len(stack.planes))]
    for path, plane in zip(paths, stack.planes, strict=True):
        save_image(path, plane)
    return paths


def test_stack_fuses_one_stack_with_depth_maps_and_a_report(zstack, tmp_path):
    planes = save_planes(zstack, tmp_path / "stack")
    result, output = run(
        "stack", *planes, "--out", tmp_path / "fused.png", "--plane-spacing-um", 70
    )
    assert result.exit_code == 0, output
    fused = read_image(tmp_path / "fused.png")
    best_plane = max(peak_signal_noise_ratio(zstack.sharp, p, data_range=1) for p in zstack.planes)
    assert peak_signal_noise_ratio(zstack.sharp, fused, data_range=1) > best_plane
    depth_index = tifffile.imread(tmp_path / "fused.depth-index.tif")
    depth_um = tifffile.imread(tmp_path / "fused.depth-um.tif")
    np.testing.assert_allclose(depth_um, 70 * depth_index, rtol=1e-5)
    report = json.loads((tmp_path / "fused.stack.json").read_text())
    assert len(report["planes"]) == len(planes)
    assert report["sharpness"] > 0
    assert "fused.png:8planes" in output


def test_stack_folder_mode_carries_on_past_a_bad_stack(zstack, tmp_path):
    save_planes(zstack, tmp_path / "stacks" / "good")
    bad = tmp_path / "stacks" / "bad"
    bad.mkdir()
    for name, size in (("plane_00.png", 32), ("plane_01.png", 40)):
        save_image(bad / name, np.zeros((size, size)))
    result, output = run(
        "stack", tmp_path / "stacks", "--out", tmp_path / "fused", "--pattern", "plane_*"
    )
    assert result.exit_code == 0, output
    assert (tmp_path / "fused" / "good.png").is_file()
    assert not (tmp_path / "fused" / "bad.png").exists()
    assert "failed:" in output and "plane_01.png" in output
    summary = pd.read_csv(tmp_path / "fused" / "stacks.csv")
    assert len(summary) == 1


def test_stack_needs_two_existing_planes(tmp_path):
    result, output = run("stack", tmp_path / "nope.png", "--out", tmp_path / "f.png")
    assert result.exit_code == 2
    assert "'planes':path" in output and "nope.png'doesnotexist" in output


@pytest.fixture(scope="module")
def trays(tmp_path_factory):
    """Two samples with one slide each, plus the truth per slide."""
    root = tmp_path_factory.mktemp("trays")
    classes = ["trochospiral", "planispiral", "spherical", "biserial"]
    truths = {}
    for sample, seed, n in (("S1", 1, 6), ("S2", 2, 9)):
        slide = make_slide(n_particles=n, classes=classes, pixel_size_um=PIXEL_SIZE_UM, seed=seed)
        save_image(root / sample / f"tray{seed}.png", slide.image)
        truths[sample] = slide.truth
    return root, truths


def test_segment_writes_crops_per_sample_and_one_morphometrics_row_each(trays, tmp_path):
    root, truths = trays
    crops, masks = tmp_path / "crops", tmp_path / "masks"
    result, output = run(
        "segment", root, "--out", crops, "--pixels-per-mm", PIXELS_PER_MM, "--masks", masks
    )
    assert result.exit_code == 0, output
    table = pd.read_parquet(crops / "morphometrics.parquet")
    assert len(table) == sum(len(t) for t in truths.values())
    assert table.groupby("sample").size().to_dict() == {s: len(t) for s, t in truths.items()}
    assert len(pd.read_csv(crops / "morphometrics.csv")) == len(table)
    for row in table.itertuples():
        crop = read_image(crops / row.path)
        assert crop.shape[:2] == (row.crop_side_px, row.crop_side_px)
        assert row.path.startswith(f"{row.sample}/")
        assert (masks / row.path).with_suffix(".png").is_file()
    files = sorted(p.relative_to(crops).as_posix() for p in crops.rglob("*_p*.png"))
    assert files == sorted(table.path)
    assert (table.equivalent_diameter_um > 100).all()


def test_morphometrics_paths_are_the_keys_classify_writes(trays, tmp_path):
    from foramflow.classify.samples import SampleRule, assign_samples, find_images

    root, _ = trays
    crops = tmp_path / "crops"
    result, output = run("segment", root, "--out", crops, "--pixels-per-mm", PIXELS_PER_MM)
    assert result.exit_code == 0, output
    table = pd.read_parquet(crops / "morphometrics.parquet")
    found = find_images(crops)
    samples, _ = assign_samples(found.path.tolist(), SampleRule(), root_name=crops.name)
    predictions = pd.DataFrame({"path": found.path, "sample": samples})
    joined = predictions.merge(table, on="path", suffixes=("", "_crop"), validate="one_to_one")
    assert len(joined) == len(table) == len(predictions)
    assert (joined["sample"] == joined["sample_crop"]).all()


def test_segment_carries_on_past_a_corrupt_image(trays, tmp_path):
    root, truths = trays
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"not an image")
    crops = tmp_path / "crops"
    image = next((root / "S1").glob("tray*.png"))
    result, output = run(
        "segment", image, corrupt, "--out", crops, "--pixels-per-mm", PIXELS_PER_MM
    )
    assert result.exit_code == 0, output
    assert "failed:" in output and "broken.png" in output
    assert len(pd.read_parquet(crops / "morphometrics.parquet")) == len(truths["S1"])


def test_segment_reads_the_depth_map_of_a_fused_stack(zstack, tmp_path):
    planes = save_planes(zstack, tmp_path / "stack")
    fused = tmp_path / "fused" / "obj.png"
    run("stack", *planes, "--out", fused, "--plane-spacing-um", zstack.plane_spacing_um)
    result, output = run(
        "segment", fused, "--out", tmp_path / "crops", "--pixels-per-mm", PIXELS_PER_MM
    )
    assert result.exit_code == 0, output
    table = pd.read_parquet(tmp_path / "crops" / "morphometrics.parquet")
    assert len(table) == len(zstack.truth)
    assert (table.thickness_um > 0).all()
    assert table.path.str.startswith("obj/obj_p").all()


def test_segment_rejects_a_bad_threshold(trays, tmp_path):
    root, _ = trays
    result, output = run("segment", root, "--out", tmp_path / "c", "--threshold", "high")
    assert result.exit_code == 2
    assert "'--threshold':mustbe'auto'oranumber" in output


@pytest.mark.parametrize("level", ["7", "-0.1", "nan"])
def test_segment_refuses_a_threshold_outside_0_1(trays, tmp_path, level):
    root, _ = trays
    result, output = run("segment", root, "--out", tmp_path / "c", "--threshold", level)
    assert result.exit_code == 2
    assert f"'--threshold':mustbe'auto'oranumberin[0,1],not'{level}'" in output
    assert not (tmp_path / "c").exists()


def test_segment_says_what_to_set_when_every_region_is_too_small(trays, tmp_path):
    root, _ = trays
    crops = tmp_path / "crops"
    result, output = run("segment", root / "S2", "--out", crops)  # another microscope's scale
    assert result.exit_code == 0, output
    rejected = pd.read_csv(crops / "rejected.csv")
    too_small = rejected[rejected.reason == "too_small"]
    assert len(too_small) == 9 and "0crops" in output
    pixels = too_small.area_um2 * (1159.4 / 1000) ** 2
    assert (
        f"in1image(s)everyregionwasdroppedassmallerthan3000µm²at1159.4pixelspermm;"
        f"the{len(too_small)}regionsfoundmeasure{too_small.area_um2.min():.3g}to"
        f"{too_small.area_um2.max():.3g}µm²({pixels.min():,.0f}to{pixels.max():,.0f}pixels)"
    ) in output
    assert "--pixels-per-mm" in output and "--min-area-um2" in output


def test_segment_lists_links_that_lead_nowhere_and_odd_names_and_goes_on(trays, tmp_path):
    import os
    import shutil

    root, truths = trays
    folder = tmp_path / "in" / "S1"
    folder.mkdir(parents=True)
    tray = next((root / "S1").glob("tray*.png"))
    shutil.copy(tray, folder / tray.name)
    (folder / "gone.png").symlink_to("nowhere.png")
    (folder / "loop1.png").symlink_to("loop2.png")
    (folder / "loop2.png").symlink_to("loop1.png")
    shutil.copy(tray, os.fsencode(folder) + b"/caf\xe9.png")
    (folder / "x.jpg").mkdir()
    crops = tmp_path / "crops"
    result, output = run("segment", tmp_path / "in", "--out", crops, "--pixels-per-mm", 200)
    assert result.exit_code == 0, output
    for shown in (
        "gone.png:danglingsymboliclink(tonowhere.png)",
        "loop1.png:symboliclinkloop",
        "loop2.png:symboliclinkloop",
        "caf\\xe9.png:filenameisnotvalidUTF-8",
    ):
        assert f"skipped:{tmp_path}/in/S1/{shown}" in output
    assert "x.jpg" not in output and "hint:" not in output
    assert len(pd.read_parquet(crops / "morphometrics.parquet")) == len(truths["S1"])


def test_segment_and_stack_refuse_images_over_max_pixels(trays, zstack, tmp_path):
    root, _ = trays
    tray = next((root / "S1").glob("tray*.png"))
    height, width = read_image(tray).shape[:2]
    result, output = run(
        "segment", tray, "--out", tmp_path / "c", "--pixels-per-mm", 200, "--max-pixels", 1000
    )
    assert result.exit_code == 1
    assert f"{tray.name}:imageof{width}×{height}pixels" in output
    assert "overthelimitof0.001Mpx" in output
    planes = save_planes(zstack, tmp_path / "stack")
    result, output = run("stack", *planes, "--out", tmp_path / "f.png", "--max-pixels", 1000)
    assert result.exit_code == 1
    assert "plane_00.png:imageof" in output and "overthelimitof0.001Mpx" in output


def test_trays_are_read_under_the_tray_limit_by_default(tmp_path, monkeypatch):
    from PIL import ImageFile

    from image_sets import write_png_bomb

    def decoding(image):
        raise OSError("decoding started")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoding)
    big = write_png_bomb(tmp_path / "big.png", 8000)  # 64 Mpx: more than a crop may have
    huge = write_png_bomb(tmp_path / "huge.png", 22400)  # 502 Mpx
    result, output = run("segment", big, huge, "--out", tmp_path / "c")
    assert result.exit_code == 1
    assert "big.png:corruptortruncatedimage(decodingstarted)" in output
    assert "huge.png:imageof22400×22400pixels(502Mpx)isoverthelimitof100Mpx" in output
