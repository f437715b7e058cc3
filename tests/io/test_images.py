import numpy as np
import pytest
import tifffile
from PIL import Image

from foramflow.io.images import ImageReadError, read_image
from image_sets import write_png_bomb


def test_8bit_grey_png_is_divided_by_255(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.array([[0, 51, 255]], dtype=np.uint8)).save(path)
    assert np.allclose(read_image(path), [[0.0, 0.2, 1.0]])


def test_16bit_png_is_divided_by_65535(tmp_path):
    path = tmp_path / "a16.png"
    values = np.array([[0, 13107, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    assert np.allclose(read_image(path), [[0.0, 0.2, 1.0]], atol=1e-6)


def test_16bit_rgb_tiff(tmp_path):
    path = tmp_path / "a.tif"
    values = np.zeros((4, 5, 3), dtype=np.uint16)
    values[..., 2] = 65535
    tifffile.imwrite(path, values)
    image = read_image(path)
    assert image.shape == (4, 5, 3)
    assert np.allclose(image[..., 2], 1.0) and np.allclose(image[..., :2], 0.0)


def test_rgba_drops_alpha_and_palette_expands(tmp_path):
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").shape == (3, 3, 3)
    palette = Image.fromarray(np.full((3, 3, 3), 128, np.uint8)).convert(
        "P", palette=Image.ADAPTIVE
    )
    palette.save(tmp_path / "p.png")
    assert np.allclose(read_image(tmp_path / "p.png"), 128 / 255, atol=0.01)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_jpeg_and_bmp(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(path)
    assert read_image(path).shape == (8, 8)


def test_corrupt_image_names_file_and_reason(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert "broken.jpg" in str(info.value)
    assert info.value.reason


def test_truncated_png_is_an_error(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageReadError, match=r"cut\.png"):
        read_image(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match=r"missing\.png"):
        read_image(tmp_path / "missing.png")


def _refuse_decoding(monkeypatch):
    """Make any pixel decoding fail the test: the size must be refused from the header."""
    from PIL import ImageFile

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_decoding)


def test_png_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    write_png_bomb(path, 12000)
    assert path.stat().st_size < 100_000
    _refuse_decoding(monkeypatch)
    with pytest.raises(ImageReadError, match=r"12000 × 12000") as info:
        read_image(path)
    assert info.value.path == path
    assert "bomb.png" in str(info.value) and "50 Mpx" in str(info.value)


def test_zlib_tiff_over_the_cap_is_refused_before_tifffile_decodes_it(tmp_path, monkeypatch):
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((2000, 2000), np.uint8), compression="zlib")
    assert path.stat().st_size < 100_000
    _refuse_decoding(monkeypatch)
    with pytest.raises(ImageReadError, match=r"bomb\.tif: .*2000 × 2000") as info:
        read_image(path, max_pixels=1_000_000)
    assert "1 Mpx" in info.value.reason


def test_tiled_zlib_tiff_over_50_megapixels_is_refused_by_default(tmp_path, monkeypatch):
    path = tmp_path / "huge.tif"
    tile = np.zeros((2048, 2048), np.uint8)
    tifffile.imwrite(
        path,
        (tile for _ in range(4 * 4)),  # written tile by tile: 67 Mpx never held in memory
        shape=(8192, 8192),
        dtype=np.uint8,
        tile=(2048, 2048),
        compression="zlib",
        compressionargs={"level": 1},
    )
    assert path.stat().st_size < 1_000_000
    _refuse_decoding(monkeypatch)
    with pytest.raises(ImageReadError, match=r"8192 × 8192"):
        read_image(path)


def test_image_within_a_raised_cap_is_read_even_above_pillows_own_limit(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    path = tmp_path / "tray.png"
    Image.fromarray(np.full((30, 40), 255, np.uint8)).save(path)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # Pillow would refuse 1 200 px
    with pytest.raises(ImageReadError, match=r"40 × 30"):
        read_image(path, max_pixels=1_000)
    assert read_image(path, max_pixels=2_000).shape == (30, 40)
    assert PILImage.MAX_IMAGE_PIXELS == 100  # Pillow's setting is left as it was


@pytest.mark.parametrize("error", ["DecompressionBombError", "DecompressionBombWarning"])
def test_pillow_decompression_bomb_errors_become_image_read_errors(tmp_path, monkeypatch, error):
    from PIL import Image as PILImage

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)

    def bomb(*args, **kwargs):
        raise getattr(PILImage, error)("Image size (999999999 pixels) exceeds limit")

    monkeypatch.setattr(PILImage, "open", bomb)
    with pytest.raises(ImageReadError, match=r"a\.png: .*999999999 pixels"):
        read_image(path)


def test_unreadable_file_is_an_image_read_error_naming_it(tmp_path, monkeypatch):
    import builtins
    import os

    path = tmp_path / "locked.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the read fail as it would for a user
        real_open = builtins.open

        def denied(file, *args, **kwargs):
            if os.fspath(file) == os.fspath(path):
                raise PermissionError(13, "Permission denied", os.fspath(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(ImageReadError, match=r"locked\.png: cannot open file.*denied"):
        read_image(path)


def test_a_folder_named_like_an_image_is_not_read(tmp_path):
    folder = tmp_path / "x.jpg"
    folder.mkdir()
    with pytest.raises(ImageReadError, match=r"x\.jpg: not a file"):
        read_image(folder)
