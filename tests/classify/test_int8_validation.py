"""An int8 copy is judged by the validation top-1 it keeps (made at training time), and
"auto" runs it only where it keeps fp32's within the bound."""

import numpy as np
import pytest

from foramflow.bundle import Bundle, BundleError, engine, update_bundle_meta
from foramflow.bundle.cascade import MAX_TOP1_LOSS, MIN_VALIDATION_IMAGES
from foramflow.bundle.engine import Engine, int8_problem, resolve_precision, validated
from foramflow.bundle.precision import ensure_precision
from foramflow.bundle.quantize import quantize_on_validation
from foramflow.bundle.records import PrecisionRecords

pytestmark = pytest.mark.usefixtures("small_checks_suffice")


def uniform_images(levels) -> np.ndarray:
    """Uniform 16 px images of the given grey levels, preprocessed (values in [0, 1])."""
    return np.stack([np.full((1, 16, 16), v / 255, dtype=np.float32) for v in levels])


@pytest.fixture
def validation():
    """Images of known class on either side of mid-grey: the brightness model's answers."""
    levels = np.concatenate([np.linspace(10, 100, 120), np.linspace(156, 245, 120)])
    return uniform_images(levels), (levels > 128).astype(int)


@pytest.mark.parametrize(
    ("calibration_levels", "kept"),
    [(np.linspace(0, 255, 32), True), (np.full(32, 3.0), False)],
    ids=["calibrated-on-the-images", "calibrated-on-black-frames"],
)
def test_an_int8_copy_is_used_by_auto_only_where_it_keeps_the_validation_top1(
    kit, tmp_path, validation, calibration_levels, kept
):
    """Calibrated on near-black frames, every brighter image saturates the int8 ranges and
    reads as dark: the copy loses half the validation top-1 and "auto" keeps fp32."""
    images, labels = validation
    assert len(labels) >= MIN_VALIDATION_IMAGES
    path = kit.write_bundle(tmp_path / "bundle", conv=True)
    bundle = Bundle.load(path)
    fp32 = Engine(bundle, precision="fp32", calibrated=False).predict(images)
    assert (fp32.argmax(1) == labels).mean() == 1.0

    checked = quantize_on_validation(
        bundle, uniform_images(calibration_levels), images, labels, fp32
    )
    record = checked.record
    assert record.fp32_validation_top1 == 1.0
    assert record.validation_images == len(labels)
    assert record.validation_top1 == (checked.probabilities.argmax(1) == labels).mean()
    assert validated(record) is kept
    if not kept:
        assert record.validation_top1 < 1.0 - MAX_TOP1_LOSS
    update_bundle_meta(path, int8=record.to_json())
    assert resolve_precision(Bundle.load(path), "auto")[0] == ("int8" if kept else "fp32")
    assert resolve_precision(Bundle.load(path), "int8") == ("int8", "model.int8.onnx")


@pytest.mark.parametrize("bits", [7, 8])
def test_an_8_bit_copy_runs_only_where_the_cpu_computes_it_exactly(
    kit, tmp_path, validation, monkeypatch, bits
):
    """On a CPU that adds int8 products in 16 bits a copy with 8-bit weights would
    overflow: "auto" keeps fp32 there and asking for int8 says why; a 7-bit copy runs."""
    images, labels = validation
    path = kit.write_bundle(tmp_path / "bundle", conv=True)
    bundle = Bundle.load(path)
    fp32 = Engine(bundle, precision="fp32", calibrated=False).predict(images)
    record = quantize_on_validation(bundle, images[::8], images, labels, fp32).record
    update_bundle_meta(path, int8={**record.to_json(), "weight_bits": bits})
    monkeypatch.setattr(engine, "int8_exact", lambda: False)
    bundle = Bundle.load(path)
    if bits == 8:
        assert "8-bit weights" in int8_problem(bundle)
        assert resolve_precision(bundle, "auto")[0] == "fp32"
        with pytest.raises(BundleError, match="8-bit weights"):
            ensure_precision(bundle, "int8", [], print, PrecisionRecords(bundle, tmp_path))
    else:
        assert int8_problem(bundle) is None
        assert resolve_precision(bundle, "auto")[0] == "int8"
