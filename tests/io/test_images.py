import numpy as np
import pytest
import tifffile
from PIL import Image

from foramflow.io.images import ImageReadError, read_image


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
