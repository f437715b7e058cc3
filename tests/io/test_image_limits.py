"""Images: the bytes a decoder holds are capped from the header, whatever the TIFF layout,
and thumbnails cost the decoded image once, not a float copy of it."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from bombs import huge_tile_tiff, many_samples_tiff
from foramflow.io.images import (
    ImageReadError,
    ImageTooLargeError,
    read_image,
    read_thumbnail,
    read_tiff_page,
)


def refuse_decoding(monkeypatch):
    def no_decoding(*_args, **_kwargs):
        raise AssertionError("decoded an image that its header should have refused")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_decoding)


def test_a_tiff_of_64_samples_per_pixel_is_refused_before_decoding(tmp_path, monkeypatch):
    """16 Mpx, inside the pixel cap, but a gigabyte of samples."""
    path = tmp_path / "samples.tif"
    path.write_bytes(many_samples_tiff())
    assert path.stat().st_size < 2 * 2**20
    refuse_decoding(monkeypatch)
    with pytest.raises(ImageReadError, match=r"samples\.tif: 64 samples per pixel"):
        read_image(path)
    with pytest.raises(ImageTooLargeError, match=r"samples\.tif: decoding the TIFF takes 1953 MiB"):
        read_tiff_page(path)  # any pixel type, but not any size: the page and its strip


def test_a_small_tiff_in_one_gigabyte_tile_is_refused_before_decoding(tmp_path, monkeypatch):
    """64 × 64 pixels stored in one 32768² tile: the decoder would hold the whole tile."""
    path = tmp_path / "tile.tif"
    path.write_bytes(huge_tile_tiff())
    refuse_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError, match=r"tile\.tif: decoding the TIFF takes 1024 MiB"):
        read_image(path)


@pytest.mark.parametrize(
    "layout",
    [{"tile": (32, 32)}, {"rowsperstrip": 48}, {"planarconfig": "separate"}],
    ids=["tiles", "one strip", "planar"],
)
def test_ordinary_tiff_layouts_still_read_exactly(tmp_path, layout):
    pixels = np.random.default_rng(0).integers(0, 65536, (48, 40, 3), dtype=np.uint16)
    data = np.moveaxis(pixels, -1, 0) if "planarconfig" in layout else pixels
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data, photometric="rgb", compression="zlib", **layout)
    np.testing.assert_array_equal(read_image(path), pixels.astype(np.float32) / 65535)


def test_the_decoded_bytes_of_a_tiff_count_its_tile(tmp_path):
    """Within the pixel cap, a tile larger than the page is over the byte cap."""
    path = tmp_path / "small_page.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), tile=(256, 256))
    assert read_image(path, max_pixels=10_000).shape == (16, 16)
    with pytest.raises(ImageTooLargeError, match="takes 0 MiB, over the limit of 0 MiB"):
        read_image(path, max_pixels=8_000)  # 64 KiB tile: over 8 bytes × 8 000 px


def peak_numpy_bytes(call):
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "TIFF"])
def test_a_thumbnail_is_small_faithful_and_takes_no_float_copy(tmp_path, image_format):
    """A 2400 × 1600 colour image: its float copy would take 46 MB."""
    rows = np.linspace(0, 255, 1600)[:, None, None] * np.ones((1, 2400, 3))
    pixels = rows.astype(np.uint8)
    path = tmp_path / f"big.{image_format.lower()}"
    Image.fromarray(pixels).save(path, image_format)
    thumb, peak = peak_numpy_bytes(lambda: read_thumbnail(path, 160))
    assert thumb.dtype == np.uint8 and thumb.shape[2] == 3
    assert 160 <= max(thumb.shape[:2]) <= 320
    assert abs(thumb.mean() - pixels.mean()) < 2
    assert peak < 16 * 2**20


def test_a_thumbnail_keeps_the_image_caps(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    Image.new("L", (3000, 100)).save(path)
    refuse_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError, match=r"wide\.png: image of 3000 × 100"):
        read_thumbnail(path, 160, max_pixels=200_000)
