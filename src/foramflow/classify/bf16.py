"""How faithful bf16 inference is for one bundle: top-1 agreement with fp32, measured once.

bf16 keeps 8 bits of mantissa, so close calls between two classes can flip. Before "auto"
uses it, the bundle's network runs in fp32 and in bf16 on a few hundred images spread over
the folder being classified; the share with the same top class, and the largest change of
any class probability, are recorded in the bundle's description
(:attr:`BundleMeta.bf16 <foramflow.bundle.schema.BundleMeta.bf16>`): the runtime, the
number of check images, the top-1 agreement and the largest probability change.

The engine then recomputes in fp32 every image whose two best classes lie closer than twice
that change (:func:`foramflow.bundle.engine.recheck_margin`): only those can flip.

A bundle that cannot be written (read-only or zipped) keeps its record elsewhere: see
:mod:`foramflow.classify.records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from foramflow.bundle.engine import Engine
from foramflow.bundle.folder import Bundle
from foramflow.bundle.schema import PrecisionCheck
from foramflow.classify.quantize import compare_engines, preprocess_images, spread


def check_bf16(bundle: Bundle, images: Sequence[str | Path], *, n_check: int = 512) -> dict:
    """Measure bf16's top-1 agreement with fp32 on up to ``n_check`` images and record it
    in the bundle folder (a zipped bundle's record lasts as long as ``bundle``); return the
    record as model.json holds it."""
    record = measure_bf16(bundle, images, n_check=n_check)
    if bundle.path.is_dir():
        bundle.update(bf16=record)
    return record.to_json()


def measure_bf16(
    bundle: Bundle, images: Sequence[str | Path], *, n_check: int = 512
) -> PrecisionCheck:
    """bf16's top-1 agreement with fp32 on up to ``n_check`` images, and the largest change
    of a probability; the record is also set in ``bundle.meta`` (not written anywhere)."""
    import openvino as ov

    batch = preprocess_images(spread(list(images), n_check), bundle)
    if len(batch) == 0:
        raise ValueError("no readable images to check bf16 against fp32")
    bundle.attach(bf16=None)  # the bf16 engine measured here must not recheck
    # Small batches: the two engines' working memory stays well under a classify run's.
    agreement, change = compare_engines(
        Engine(bundle, precision="fp32"), Engine(bundle, precision="bf16"), batch, batch_size=16
    )
    record = PrecisionCheck(
        runtime=f"openvino {ov.__version__}",
        check_images=len(batch),
        top1_agreement=agreement,
        max_probability_change=round(change, 6),
    )
    bundle.attach(bf16=record)
    return record
