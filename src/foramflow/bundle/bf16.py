"""How faithful bf16 inference is for one bundle: top-1 agreement with fp32, measured once.

bf16 keeps 8 bits of mantissa, so close calls between two classes can flip. Before "auto"
uses it, the bundle's network runs in fp32 and in bf16 on a few hundred images spread over
the folder being classified; the share with the same top class, and the largest change of
any class probability, are recorded in the bundle's description
(:attr:`BundleMeta.bf16 <foramflow.bundle.schema.BundleMeta.bf16>`): the runtime, the
number of check images, the top-1 agreement and the largest probability change.

The engine then recomputes in fp32 every image whose two best classes lie closer than twice
that change (:func:`foramflow.bundle.engine.recheck_margin`): only those can flip. What
decides whether "auto" uses bf16 is the agreement of the results so delivered. Measured on
the images that set the margin it would be 100 % by construction, so it is cross-validated:
each half of the check images is scored with the margin the other half gives.

A bundle that cannot be written (read-only or zipped) keeps its record elsewhere: see
:mod:`foramflow.bundle.records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from foramflow.bundle.engine import Engine, close_calls
from foramflow.bundle.folder import Bundle
from foramflow.bundle.quantize import paired_predictions, preprocess_images, spread
from foramflow.bundle.schema import PrecisionCheck
from foramflow.errors import InvalidInput


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
        raise InvalidInput("no readable images to check bf16 against fp32")
    bundle.attach(bf16=None)  # the bf16 engine measured here must not recheck
    # Small batches: the two engines' working memory stays well under a classify run's.
    exact, approx = paired_predictions(
        Engine(bundle, precision="fp32"), Engine(bundle, precision="bf16"), batch, batch_size=16
    )
    change = float(np.abs(exact - approx).max())
    record = PrecisionCheck(
        runtime=f"openvino {ov.__version__}",
        check_images=len(batch),
        top1_agreement=float((exact.argmax(1) == approx.argmax(1)).mean()),
        max_probability_change=round(change, 6),
        rechecked_agreement=held_out_rechecked_agreement(exact, approx),
        recheck_share=len(close_calls(approx, 2.0 * change, _cuts(bundle))) / len(batch),
        model_sha256=bundle.file_sha256(),
    )
    bundle.attach(bf16=record)
    return record


def _cuts(bundle: Bundle) -> np.ndarray:
    """The bundle's own unsure thresholds per class, near which bf16 scores are recomputed."""
    from foramflow.bundle.decisions import DecisionRule

    return DecisionRule(tuple(bundle.labels), bundle.threshold, bundle.class_thresholds).per_class


def held_out_rechecked_agreement(exact: np.ndarray, approx: np.ndarray) -> float | None:
    """Top-1 agreement with ``exact`` of ``approx`` once its close calls are replaced by
    ``exact``, each half of the images judged close with the margin the other half sets
    (twice its largest probability change); None for fewer than two images."""
    if len(exact) < 2:
        return None
    halves = (np.arange(0, len(exact), 2), np.arange(1, len(exact), 2))
    agreeing = 0
    for scored, setting in (halves, halves[::-1]):
        margin = 2.0 * float(np.abs(exact[setting] - approx[setting]).max())
        delivered = approx[scored].copy()
        close = close_calls(delivered, margin)
        delivered[close] = exact[scored][close]
        agreeing += int((delivered.argmax(1) == exact[scored].argmax(1)).sum())
    return agreeing / len(exact)
