import numpy as np
from PIL import Image, ImageFile

from foramflow.bundle import decode
from foramflow.data.arrays import preprocess_all
from foramflow.imaging.preprocess import PreprocessSpec


def _pngs(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}.png")
        Image.fromarray(np.full((20, 20), 10 * i, np.uint8)).save(paths[-1])
    return paths


def test_oversize_image_is_skipped_before_decoding(tmp_path, monkeypatch):
    paths = _pngs(tmp_path, 2)
    Image.fromarray(np.zeros((100, 120), np.uint8)).save(tmp_path / "big.png")
    paths.append(tmp_path / "big.png")
    real_load = ImageFile.ImageFile.load

    def load(image):
        assert image.size != (120, 100), "the oversize image was decoded"
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    images, ok, skipped = preprocess_all(
        paths, PreprocessSpec(size=16), workers=1, max_pixels=10_000
    )
    assert list(ok) == [0, 1] and images.shape == (2, 1, 16, 16)
    assert list(skipped) == [tmp_path / "big.png"]
    assert "120 × 100 pixels" in skipped[tmp_path / "big.png"]


def test_an_unexpected_decoding_failure_skips_the_image_not_the_run(tmp_path, monkeypatch):
    paths = _pngs(tmp_path, 3)
    real = decode.load_and_preprocess

    def odd(path, spec, **kwargs):
        if path == paths[1]:
            raise RuntimeError("decoder crashed")
        return real(path, spec, **kwargs)

    monkeypatch.setattr(decode, "load_and_preprocess", odd)
    images, ok, skipped = preprocess_all(paths, PreprocessSpec(size=16), workers=1)
    assert list(ok) == [0, 2] and len(images) == 2
    assert skipped == {paths[1]: "cannot read image (RuntimeError: decoder crashed)"}
