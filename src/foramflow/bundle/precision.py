"""Which precision a classification runs in: a reduced one (bf16, int8) only once it has been
measured against fp32 for this very network, and said how it compares (method §7)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from foramflow.bundle.bf16 import measure_bf16
from foramflow.bundle.cascade import MAX_TOP1_LOSS
from foramflow.bundle.engine import (
    MAX_RECHECK_SHARE,
    MIN_AGREEMENT,
    MIN_CHECK_IMAGES,
    bf16_pays,
    cpu_has_bf16,
    describes_this_network,
    enough_evidence,
    faithful,
    int8_exact,
    int8_file,
    int8_problem,
    int8_runs_here,
    validated,
)
from foramflow.bundle.folder import Bundle
from foramflow.bundle.quantize import method, quantize_into
from foramflow.bundle.records import PrecisionRecords
from foramflow.bundle.schema import BF16_RECORD, INT8_RECORD, BundleError, PrecisionCheck
from foramflow.errors import OutputError


def ensure_precision(
    bundle: Bundle,
    precision: str,
    paths: Sequence[Path],
    log: Callable[[str], None],
    records: PrecisionRecords,
) -> str:
    """Measure what a reduced precision costs before it is used, once per bundle.

    bf16 (asked for, or "auto" on a CPU that has it) is checked against fp32 on ``paths``, the
    images to classify; int8, when asked for and the bundle has none, or one made by another
    method than today's, from another network, or whose file is not the one checked, is
    calibrated on them. "auto" takes only an int8 copy checked on the validation split at
    training time, and never makes one. The records go where ``records`` can keep
    them; a check on fewer than :data:`MIN_CHECK_IMAGES` images is reported, used when asked
    for, but never kept, so that "auto" never relies on it.
    """
    if precision == "bf16" and not cpu_has_bf16():
        log("warning: this CPU has no native bf16; bf16 inference will be slow here")
    wants_bf16 = precision == "bf16" or (precision == "auto" and cpu_has_bf16())
    if wants_bf16 and _bf16_needs_check(bundle.meta.bf16, bundle):
        log("checking bf16 inference against fp32 on images from this folder")
        record = measure_bf16(bundle, paths)
        if enough_evidence(record):
            _report_kept(log, "bf16 record", bundle, records.keep(BF16_RECORD, record))
        else:
            log(_thin_evidence("bf16", record))
        _report_agreement(log, "bf16", record)
    if precision == "auto":
        if validated(bundle.meta.int8) and (problem := int8_problem(bundle)):
            log(f"warning: {bundle.path}: {problem}; --precision auto runs without it")
        return precision
    if precision != "int8":
        return precision
    problem = int8_problem(bundle)
    record = bundle.meta.int8
    if record is not None and not int8_runs_here(record):
        # a copy made for CPUs that compute it exactly: kept for them, not remade here
        raise BundleError(f"{bundle.path}: {problem}; run it with --precision fp32 or cascade")
    judged = problem is None and record.validation_top1 is not None
    made_as_here = method(8 if int8_exact() else 7)
    if judged or (problem is None and record.method == made_as_here):
        # a copy judged on the validation split is kept, whatever method made it
        _report_agreement(log, "int8", bundle.meta.int8)  # asked for again: say it again
        return precision
    if problem is None:
        log(
            f"the bundle's int8 model was made another way ({bundle.meta.int8.method}): "
            "calibrating a new one on images from this folder"
        )
    else:
        log(f"{problem}: calibrating one on images from this folder")
    folder = records.make(INT8_RECORD, lambda place: quantize_into(bundle, paths, place))
    if folder is None:
        raise OutputError(
            f"{records.folders[-1]}: cannot be created, nor can the bundle or the user cache "
            "be written: there is nowhere to put an int8 model"
        )
    log(f"int8 model written to {Path(int8_file(bundle))}")
    if not enough_evidence(bundle.meta.int8):
        log(_thin_evidence("int8", bundle.meta.int8))
    _report_agreement(log, "int8", bundle.meta.int8)
    return precision


def _bf16_needs_check(record: PrecisionCheck | None, bundle: Bundle) -> bool:
    """A bf16 record is measured (again) unless it holds the agreement of the results as
    delivered, on enough images, for this very network."""
    return (
        record is None
        or record.rechecked_agreement is None
        or not enough_evidence(record)
        or not describes_this_network(record, bundle)
    )


def _thin_evidence(precision: str, record: PrecisionCheck) -> str:
    consequence = (
        "its agreement says little" if precision == "int8"
        else "--precision auto will not rely on this check"
    )  # fmt: skip
    return (
        f"{precision}: checked on {record.check_images} images, fewer than the "
        f"{MIN_CHECK_IMAGES} a telling check needs: {consequence}"
    )


def _report_kept(log, what: str, bundle: Bundle, folder: Path | None) -> None:
    """Say where a record went when it could not go into the bundle."""
    if folder is None:
        log(f"warning: {what} kept for this run only: no folder to keep it in can be written")
    elif folder != bundle.path:
        log(f"{bundle.path} cannot be written: {what} kept in {folder}")


def _report_agreement(log, precision: str, record: PrecisionCheck) -> None:
    if record.top1_agreement is not None:
        log(
            f"{precision}: top-1 agreement with fp32 {record.top1_agreement:.2%} "
            f"on {record.check_images} images"
        )
    if record.rechecked_agreement is not None:
        log(
            f"{precision}: {record.rechecked_agreement:.2%} with its close calls "
            f"({record.recheck_share:.1%} of images) recomputed in fp32, on images that "
            "did not set the margin"
        )
    if precision == "int8":
        if record.validation_top1 is None and enough_evidence(record) and not faithful(record):
            log(
                f"warning: below {MIN_AGREEMENT:.1%}: int8 results differ from fp32's for some "
                "images"
            )
        _report_validation(log, record)
        return
    if not enough_evidence(record):
        return
    if not faithful(record):
        log(
            f"warning: below {MIN_AGREEMENT:.1%}: {precision} results would differ from fp32 "
            f"for some images; --precision auto uses fp32 with this bundle"
        )
    elif precision == "bf16" and not bf16_pays(record):
        log(
            f"bf16 would recompute {record.recheck_share:.0%} of images in fp32 (its close calls "
            f"and scores near the unsure threshold), more than {MAX_RECHECK_SHARE:.0%}: no "
            "faster than fp32, which --precision auto uses with this bundle"
        )


def _report_validation(log, record: PrecisionCheck) -> None:
    """What the int8 copy kept of fp32's validation top-1, which decides whether "auto" uses it."""
    if record.validation_top1 is None or record.fp32_validation_top1 is None:
        log(
            "int8: checked without labelled images; --precision auto uses only an int8 copy "
            "checked on the validation split at training time"
        )
        return
    log(
        f"int8: validation top-1 {record.validation_top1:.2%} against fp32's "
        f"{record.fp32_validation_top1:.2%} on {record.validation_images} images"
    )
    if not validated(record):
        log(
            f"warning: int8 loses more than {100 * MAX_TOP1_LOSS:.1f} points of top-1 on the "
            "validation split "
            "(or was checked on too few images); --precision auto uses fp32 with this bundle"
        )
