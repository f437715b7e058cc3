"""How faithful bf16 inference is for one bundle: top-1 agreement with fp32, measured once.

bf16 keeps 8 bits of mantissa, so close calls between two classes can flip. Before "auto"
uses it, the bundle's network runs in fp32 and in bf16 on a few hundred images spread over
the folder being classified; the share with the same top class, and the largest change of
any class probability, are recorded in model.json under ``"bf16"``::

    "bf16": {"runtime": "openvino 2026.4.1", "check_images": 512, "top1_agreement": 0.998,
             "max_probability_change": 0.03}

The engine then recomputes in fp32 every image whose two best classes lie closer than twice
that change (:func:`foramflow.classify.engine.recheck_margin`): only those can flip.

A bundle that cannot be written (read-only or zipped) keeps its record elsewhere: see
:mod:`foramflow.classify.records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from foramflow.classify.engine import BF16_FIELD, Engine
from foramflow.classify.quantize import compare_engines, preprocess_images, spread
from foramflow.io.bundle import Bundle, update_bundle_meta


def check_bf16(bundle: Bundle, images: Sequence[str | Path], *, n_check: int = 512) -> dict:
    """Measure bf16's top-1 agreement with fp32 on up to ``n_check`` images and record it
    in the bundle folder (a zipped bundle's record lasts as long as ``bundle``)."""
    record = measure_bf16(bundle, images, n_check=n_check)
    if bundle.path.is_dir():
        update_bundle_meta(bundle.path, **{BF16_FIELD: record})
    return record


def measure_bf16(bundle: Bundle, images: Sequence[str | Path], *, n_check: int = 512) -> dict:
    """bf16's top-1 agreement with fp32 on up to ``n_check`` images, and the largest change
    of a probability; the record is also set in ``bundle.meta`` (not written anywhere)."""
    import openvino as ov

    batch = preprocess_images(spread(list(images), n_check), bundle)
    if len(batch) == 0:
        raise ValueError("no readable images to check bf16 against fp32")
    bundle.meta.pop(BF16_FIELD, None)  # the bf16 engine measured here must not recheck
    # Small batches: the two engines' working memory stays well under a classify run's.
    agreement, change = compare_engines(
        Engine(bundle, precision="fp32"), Engine(bundle, precision="bf16"), batch, batch_size=16
    )
    record = {
        "runtime": f"openvino {ov.__version__}",
        "check_images": len(batch),
        "top1_agreement": agreement,
        "max_probability_change": round(change, 6),
    }
    bundle.meta[BF16_FIELD] = record
    return record
