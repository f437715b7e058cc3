import numpy as np
import pytest

from foramflow.imaging.preprocess import (
    PreprocessSpec,
    edge_median,
    pad_to_square,
    preprocess,
    to_channels,
)


def test_pad_to_square_fills_with_edge_median():
    # 2×4 image: border pixels are all pixels here; median of [1,1,1,1,9,9,9,1] = 1
    image = np.array([[1, 1, 9, 1], [1, 9, 9, 1]], dtype=np.float32)[..., None]
    padded = pad_to_square(image)
    assert padded.shape == (4, 4, 1)
    assert np.array_equal(padded[1:3, :, 0], image[..., 0])  # centred vertically
    assert np.all(padded[0] == 1) and np.all(padded[3] == 1)


def test_edge_median_ignores_the_centre():
    image = np.full((5, 5, 1), 0.2, dtype=np.float32)
    image[1:4, 1:4] = 0.9  # bright particle inside
    assert edge_median(image)[0] == pytest.approx(0.2)


def test_padding_is_symmetric_for_odd_difference():
    image = np.zeros((2, 5, 1), dtype=np.float32)
    image[:, :] = 0.5
    image[0, 0] = 0.0
    padded = pad_to_square(image)
    assert padded.shape == (5, 5, 1)
    # 3 rows of padding: 1 above, 2 below
    assert np.array_equal(padded[1:3, :, 0], image[..., 0])


def test_preprocess_output_is_network_ready():
    image = np.random.default_rng(0).random((30, 50, 3)).astype(np.float32)
    grey = preprocess(image, PreprocessSpec(size=16, channels=1))
    colour = preprocess(image, PreprocessSpec(size=16, channels=3))
    assert grey.shape == (1, 16, 16) and grey.dtype == np.float32
    assert colour.shape == (3, 16, 16)
    assert grey.min() >= 0.0 and grey.max() <= 1.0


def test_grey_conversion_uses_luma_and_grey_to_colour_repeats():
    rgb = np.zeros((2, 2, 3), dtype=np.float32)
    rgb[..., 1] = 1.0  # pure green
    assert to_channels(rgb, 1)[0, 0, 0] == pytest.approx(0.587)
    grey = np.full((2, 2), 0.3, dtype=np.float32)
    assert np.allclose(to_channels(grey, 3), 0.3)


def test_constant_image_survives_resize():
    image = np.full((40, 40), 0.25, dtype=np.float32)
    assert np.allclose(preprocess(image, PreprocessSpec(size=16)), 0.25, atol=1e-6)


def test_spec_round_trips_and_rejects_bad_values():
    spec = PreprocessSpec(size=64, channels=3)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="channels"):
        PreprocessSpec(size=64, channels=2)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        PreprocessSpec.from_dict({"name": "other", "params": {}})


@pytest.fixture
def no_decoding(monkeypatch):
    """Any pixel decoding fails the test: an oversize image must be refused from its header."""
    from PIL import ImageFile

    def refuse(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def _png(path, shape=(40, 30)):
    from PIL import Image

    Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    return path


def test_load_and_preprocess_caps_the_decoded_pixels(tmp_path, no_decoding):
    from foramflow.imaging.preprocess import load_and_preprocess
    from foramflow.io.images import ImageReadError

    path = _png(tmp_path / "crop.png")
    with pytest.raises(ImageReadError, match=r"crop\.png: image of 30 × 40 pixels"):
        load_and_preprocess(path, PreprocessSpec(size=16), max_pixels=1000)


def test_classify_decoder_reports_an_oversize_image_without_decoding_it(tmp_path, no_decoding):
    from foramflow.bundle.decode import decode_batch

    path = _png(tmp_path / "crop.png")
    batch, errors = decode_batch([str(path)], PreprocessSpec(size=16), max_pixels=1000)
    assert batch.shape == (0, 1, 16, 16)
    assert "30 × 40 pixels" in errors[0] and "0.001 Mpx" in errors[0]


def test_a_long_strip_is_reduced_before_it_is_padded():
    """1 × 10 000 pixels would pad to a 10 000² square (1.2 GB in colour): it is reduced to
    at most MAX_SQUARE_SIDE first, and keeps its values (box means of a constant)."""
    import tracemalloc

    from foramflow.imaging.preprocess import MAX_SQUARE_SIDE, reduce_longest_side

    strip = np.full((10_000, 1), 0.25, np.float32)
    tracemalloc.start()
    try:
        out = preprocess(strip, PreprocessSpec(size=16, channels=3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (3, 16, 16)
    assert peak < 3 * MAX_SQUARE_SIDE**2 * 4 * 1.5  # one square of the reduced side
    reduced = reduce_longest_side(np.arange(12, dtype=np.float32).reshape(6, 2, 1), 3)
    np.testing.assert_allclose(reduced[..., 0], [[1.5], [5.5], [9.5]])  # 2 × 2 box means


def test_an_image_within_the_square_limit_is_not_reduced():
    from foramflow.imaging.preprocess import reduce_longest_side

    image = np.random.default_rng(0).random((300, 200, 3)).astype(np.float32)
    assert reduce_longest_side(image, 300) is image
