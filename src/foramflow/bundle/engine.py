"""The inference engine: a bundle's ONNX model in fp32, bf16 or int8.

Every command that runs a bundle's network runs it here: classify, predict, evaluate,
calibrate and the labelling app's pre-labelling.

* fp32 and int8 run in ONNX Runtime. The bundle may carry an int8 copy of its network,
  recorded in its description (see :mod:`foramflow.bundle.quantize`).
* bf16 runs model.onnx itself in OpenVINO with bfloat16 arithmetic, on CPUs that compute
  bf16 natively (AVX-512 BF16 or AMX); elsewhere it would be slower than fp32. Its top-1
  agreement with fp32 is measured once per bundle and recorded, with the largest change of
  a probability; images whose two best classes are closer than twice that change, or
  whose score lies that close to the unsure threshold, are recomputed in fp32, so that
  close calls come out as in fp32.

Precision "auto" takes int8 only where the bundle's int8 copy was checked on the validation
split at training time and kept its top-1 within 0.3 points of fp32's there, on at least 200
images; and bf16 where the CPU has it and its recorded top-1 agreement with fp32 is at least
99.5 % on at least 200 check images. Each record names the hash of the model.onnx it checked
(and of the int8 file); fp32 otherwise. For bf16 that is the agreement of its results as
delivered, close calls recomputed, measured on images that did not set the margin (see
:mod:`foramflow.bundle.bf16`), and it must recompute no more than a fifth of the images,
else it is slower than fp32. An int8 copy made at classification time, from images without
labels, runs when asked for (``--precision int8``), never under "auto".

The network's outputs must be probabilities: finite, not negative, each row summing to 1;
anything else is a :class:`BundleError` naming the model, never a class or "unsure".

A network is checked against the bundle's description when it is opened: it must read what
the preprocessing gives and have one output per label; otherwise :class:`BundleError` says
which file is wrong and how.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import TYPE_CHECKING

import numpy as np

from foramflow.bundle.cascade import (
    MAX_TOP1_LOSS,
    MIN_VALIDATION_IMAGES,
    ONE_VIEW_FILES,
    image_views,
    top_two_margin,
)
from foramflow.bundle.int8_exact import int8_exact
from foramflow.bundle.schema import (
    INT8_FILE,
    META_FILE,
    MODEL_FILE,
    ONE_VIEW_INT8_FILE,
    BundleError,
    CascadeCheck,
    PrecisionCheck,
    describe_input,
)
from foramflow.errors import InvalidInput

if TYPE_CHECKING:
    from foramflow.bundle.folder import Bundle

PRECISIONS = ("auto", "fp32", "bf16", "int8", "cascade")
# "auto" takes bf16 or int8 only when it agrees this well with fp32 (top-1, recorded) ...
MIN_AGREEMENT = 0.995
# ... on at least this many check images: on fewer, 99.5 % is no evidence (one image
# agrees 100 % or 0 %), and a record made on fewer is never kept for "auto".
MIN_CHECK_IMAGES = 200
# ... and bf16 only when it recomputes at most this share of images in fp32: beyond it,
# bf16 plus the recomputation is no faster than fp32 alone.
MAX_RECHECK_SHARE = 0.2
# A network's probabilities must sum to 1 within this (fp32 and int8, whose softmax stays in
# fp32) or within the bf16 one (OpenVINO may compute the softmax itself in bf16).
SUM_TOLERANCE = 1e-3
BF16_SUM_TOLERANCE = 2e-2


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. under Slurm)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@functools.cache
def cpu_has_bf16() -> bool:
    """True where this CPU computes bf16 natively (asked of OpenVINO, once): the one test of
    the capability, for inference and for training's autocast alike; without OpenVINO, False."""
    try:
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no OpenVINO, or it cannot start here
        return False


def faithful(record: PrecisionCheck | None) -> bool:
    """Whether a precision record shows a top-1 agreement with fp32 of at least 99.5 % on at
    least :data:`MIN_CHECK_IMAGES` images: that of the results as delivered, close calls
    recomputed, where the record has it."""
    if record is None or not enough_evidence(record):
        return False
    agreement = record.rechecked_agreement
    if agreement is None:
        agreement = record.top1_agreement
    return (agreement or 0.0) >= MIN_AGREEMENT


def validated(record: PrecisionCheck | None) -> bool:
    """Whether a reduced-precision record shows, on at least :data:`MIN_VALIDATION_IMAGES`
    images of the validation split, a top-1 within :data:`MAX_TOP1_LOSS` of fp32's."""
    if record is None or record.validation_top1 is None or record.fp32_validation_top1 is None:
        return False
    return (record.validation_images or 0) >= MIN_VALIDATION_IMAGES and (
        record.validation_top1 >= record.fp32_validation_top1 - MAX_TOP1_LOSS
    )


def bf16_pays(record: PrecisionCheck | None) -> bool:
    """Whether a bf16 record is faithful and recomputes few enough images in fp32 to be
    faster than fp32."""
    return faithful(record) and (record.recheck_share or 0.0) <= MAX_RECHECK_SHARE


def enough_evidence(record: PrecisionCheck) -> bool:
    """Whether a check was made on enough images for "auto" to rely on it."""
    return (record.check_images or 0) >= MIN_CHECK_IMAGES


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describes_this_network(record: PrecisionCheck, bundle: Bundle) -> bool:
    """Whether a record was made from the bundle's model.onnx as it is now (a record without
    the hash of the network it checked proves nothing about this one)."""
    return record.model_sha256 is not None and record.model_sha256 == bundle.file_sha256()


def int8_file(bundle: Bundle) -> str | None:
    """The bundle's int8 copy of its network, if it has one."""
    return bundle.meta.int8.file if bundle.meta.int8 else None


def int8_problem(bundle: Bundle) -> str | None:
    """Why the bundle's int8 model cannot be used as recorded (none, unreadable, changed
    since it was checked, or made from another network), or None."""
    record = bundle.meta.int8
    if record is None or not record.file:
        return "the bundle has no int8 model"
    try:
        digest = bundle.file_sha256(record.file)
    except BundleError as err:
        return f"its int8 model cannot be read ({err})"
    if record.file_sha256 is None or record.model_sha256 is None:
        return "its int8 model was recorded without the hashes that bind it to its check"
    if digest != record.file_sha256:
        return f"its int8 model {bundle.location(record.file)} is not the file that was checked"
    if not describes_this_network(record, bundle):
        return f"its int8 model was made from another {MODEL_FILE}"
    if not int8_runs_here(record):
        return (
            "its int8 model has 8-bit weights, which this CPU adds in pairs into 16 bits and "
            "overflows (foramflow.bundle.int8_exact)"
        )
    return None


def int8_runs_here(record: PrecisionCheck) -> bool:
    """Whether this CPU computes an int8 copy exactly: one with 7-bit weights anywhere, one
    with 8-bit weights where :func:`~foramflow.bundle.int8_exact.int8_exact` says so."""
    return record.weight_bits != 8 or int8_exact()


NO_CASCADE = "the bundle holds no cascade (a run that wrote no bundle_fast, or one older)"


def cascade_here(bundle: Bundle) -> CascadeCheck | None:
    """The cascade this machine runs: the one with the one view's int8 copy in a stage
    where the bundle has one, intact, and this CPU computes that copy exactly
    (:mod:`foramflow.bundle.int8_exact`); else the fp32 one."""
    record = bundle.meta.cascade_int8
    exact = record is not None and (record.int8_weight_bits == 7 or int8_exact())
    if exact and _cascade_problem(bundle, record) is None:
        return record
    return bundle.meta.cascade


def cascade_problem(bundle: Bundle) -> str | None:
    """Why the bundle cannot run a cascade (:mod:`foramflow.bundle.cascade`), or None."""
    record = cascade_here(bundle)
    if record is None:
        return NO_CASCADE
    return _cascade_problem(bundle, record)


def _cascade_problem(bundle: Bundle, record: CascadeCheck) -> str | None:
    if record.model_sha256 != bundle.file_sha256():
        return f"its cascade was chosen for another {MODEL_FILE}"
    stages = [(record.one_view_file, record.file_sha256)]
    if record.full_file != MODEL_FILE:
        stages.append((record.full_file, record.full_file_sha256))
    for name, expected in stages:
        try:
            digest = bundle.file_sha256(name)
        except BundleError as err:
            return f"its cascade's network {name} cannot be read: {err}"
        if expected != digest:
            return f"its {name} is not the file its cascade was chosen for"
    return None


def auto_takes_int8(bundle: Bundle) -> bool:
    """Whether "auto" may run the bundle's int8 model: it kept fp32's top-1 on the validation
    split, was made from this network, and is the very file that was checked."""
    return validated(bundle.meta.int8) and int8_problem(bundle) is None


def auto_takes_bf16(bundle: Bundle) -> bool:
    """Whether "auto" may run this network in bf16 on this CPU."""
    record = bundle.meta.bf16
    return bf16_pays(record) and cpu_has_bf16() and describes_this_network(record, bundle)


def resolve_precision(bundle: Bundle, precision: str) -> tuple[str, str]:
    """(precision, model file name) that ``precision`` means for this bundle on this CPU."""
    if precision not in PRECISIONS:
        raise InvalidInput(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    int8 = int8_file(bundle)
    if precision == "int8" and not int8:
        raise BundleError(f"{bundle.path}: the bundle holds no int8 model")
    if precision == "cascade":
        record = cascade_here(bundle)
        if record is None:
            raise BundleError(f"{bundle.path}: {NO_CASCADE}")
        if problem := _cascade_problem(bundle, record):
            raise BundleError(f"{bundle.path}: {problem}")
        return "cascade", record.full_file
    if precision == "bf16" or (precision == "auto" and auto_takes_bf16(bundle)):
        return "bf16", MODEL_FILE
    if precision == "int8" or (precision == "auto" and int8 and auto_takes_int8(bundle)):
        return "int8", int8
    return "fp32", MODEL_FILE


def recheck_margin(bundle: Bundle) -> float:
    """bf16 results whose top two probabilities differ by less than this are recomputed in
    fp32: a flip of the top class needs the two to move towards each other by the margin,
    each by at most the largest change seen in the bundle's bf16 check (0 without one)."""
    bf16 = bundle.meta.bf16
    return 2.0 * ((bf16.max_probability_change if bf16 else None) or 0.0)


def close_calls(
    probs: np.ndarray, margin: float, cuts: np.ndarray | None = None, scores=None
) -> np.ndarray:
    """Indices of the rows of ``probs`` whose two best classes are within ``margin``, or
    whose score (``scores``, by default the top probability) lies within ``margin`` of its
    top class's cut in ``cuts`` (the unsure thresholds; 0 for none)."""
    if margin <= 0 or probs.shape[1] < 2:
        return np.empty(0, dtype=np.intp)
    top_two = np.partition(probs, -2, axis=1)[:, -2:]
    close = top_two[:, 1] - top_two[:, 0] < margin
    if cuts is not None:
        cut = np.asarray(cuts)[probs.argmax(1)]
        score = top_two[:, 1] if scores is None else scores
        close |= (cut > 0) & (np.abs(score - cut) < margin)
    return np.flatnonzero(close)


class Engine:
    """Runs a bundle's network on preprocessed batches.

    Probabilities include the bundle's calibration unless ``calibrated`` is False (the
    network's own, to fit a calibration on).
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        precision: str = "auto",
        threads: int | None = None,
        calibrated: bool = True,
        cuts: np.ndarray | None = None,
    ):
        """``cuts``: the unsure threshold of each class, where a bf16 score so close that
        it might fall on the other side is recomputed in fp32 (as a close call is)."""
        self.bundle = bundle
        self.cuts = None if cuts is None else np.asarray(cuts, dtype=np.float32)
        self.precision, self.model_file = resolve_precision(bundle, precision)
        network = bundle.network(self.model_file)
        model, self.hash, self.where = network.model, network.hash, network.where
        self.threads = threads or available_cores()
        self.temperature = network.temperature if calibrated else 1.0
        self.margin = 0.0
        self.n_rechecked = 0
        self.input_name: str | None = None  # the network input's name in ONNX Runtime
        if self.precision == "bf16":
            self._run = _openvino_bf16(model, self.threads, self.where)
            self.margin = recheck_margin(bundle)
            if self.margin > 0:
                self._exact = _runner(_onnxruntime(model, self.threads, bundle, self.where))
        else:
            session = _onnxruntime(model, self.threads, bundle, self.where)
            self.input_name = session.get_inputs()[0].name
            self._run = _runner(session)
        self._first = None  # the cascade's one-view network
        if self.precision == "cascade":
            record = self.cascade = cascade_here(bundle)
            # a full stage of the one-view file runs it on every view of the image
            self.views = record.views if record.full_file in ONE_VIEW_FILES else 0
            self.reuse_first = record.one_view_file == record.full_file
            if self.reuse_first:
                self._first, self.first_where = self._run, self.where
            else:
                one_view = bundle.network(record.one_view_file)
                first = _onnxruntime(one_view.model, self.threads, bundle, one_view.where)
                self._first, self.first_where = _runner(first), one_view.where
            self.cascade_margin = record.margin
            self.first_temperature = record.one_view_temperature if calibrated else 1.0

    def describe(self) -> str:
        """What runs the network, as reports say it."""
        runtime = "OpenVINO" if self.precision == "bf16" else "ONNX Runtime"
        if self.precision == "cascade":
            record = self.cascade
            return (
                f"{runtime}, {_file_precision(record.one_view_file)} one view first and "
                f"{_file_precision(record.full_file)} every view where it is unsure, "
                f"{self.threads} CPU thread(s)"
            )
        return f"{runtime}, {self.precision}, {self.threads} CPU thread(s)"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) float32 for a preprocessed batch (N, C, S, S); an
        empty batch gives an empty (0, K) array."""
        if len(batch) == 0:
            return np.empty((0, len(self.bundle.labels)), np.float32)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._first is not None:
            return self._cascade(batch)
        probs = self._run(batch)
        tolerance = BF16_SUM_TOLERANCE if self.precision == "bf16" else SUM_TOLERANCE
        check_probabilities(probs, self.bundle, self.where, tolerance=tolerance)
        calibrated = apply_temperature(probs, self.temperature)
        if self.margin > 0:
            close = close_calls(probs, self.margin, self.cuts, calibrated.max(1))
            if len(close):
                calibrated = calibrated.copy()
                exact = self._exact(np.ascontiguousarray(batch[close]))
                check_probabilities(exact, self.bundle, self.bundle.location())
                calibrated[close] = apply_temperature(exact, self.temperature)
            self.n_rechecked += len(close)
        return calibrated.astype(np.float32, copy=False)

    def _cascade(self, batch: np.ndarray) -> np.ndarray:
        """The one-view network's answers, the full network's where the one view's two best
        classes lie closer than the cascade's margin; each with its own temperature."""
        first = self._first(batch)
        check_probabilities(first, self.bundle, self.first_where)
        calibrated = apply_temperature(first, self.first_temperature)
        unsure = np.flatnonzero(top_two_margin(first) < self.cascade_margin)
        if len(unsure):
            images = np.ascontiguousarray(batch[unsure])
            if self.views:
                full = self._every_view(images, first[unsure] if self.reuse_first else None)
            else:
                full = self._run(images)
                check_probabilities(full, self.bundle, self.where)
            calibrated = calibrated.copy()
            calibrated[unsure] = apply_temperature(full, self.temperature)
            self.n_rechecked += len(unsure)
        return calibrated

    def _every_view(self, images: np.ndarray, as_it_lies: np.ndarray | None) -> np.ndarray:
        """The full network's answer as the mean of the one-view network's over every view
        of ``images``; ``as_it_lies``: its answers for the images as they lie, where known."""
        views = image_views(images, self.views, as_it_lies=as_it_lies is None)
        answers = self._run(np.concatenate(views))
        check_probabilities(answers, self.bundle, self.where)
        total = answers.reshape(len(views), len(images), -1).sum(0, dtype=np.float64)
        if as_it_lies is not None:
            total += as_it_lies
        return (total / self.views).astype(np.float32)


def _file_precision(name: str) -> str:
    return "int8" if name in (INT8_FILE, ONE_VIEW_INT8_FILE) else "fp32"


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale probabilities by a temperature: softmax(log p / T); T = 1 is a no-op."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def _onnxruntime(model: bytes, threads: int, bundle: Bundle, where: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Decoding runs in other processes on the same cores: do not busy-wait between ops.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return open_session(model, options, bundle, where)


def _runner(session):
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})[0]


def _openvino_bf16(model: bytes, threads: int, where: str):
    import openvino as ov

    core = ov.Core()
    settings = {
        "INFERENCE_PRECISION_HINT": "bf16",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
    }
    try:
        compiled = core.compile_model(core.read_model(model), "CPU", settings)
    except Exception as err:  # OpenVINO's errors share no base class of their own
        raise BundleError(
            f"{where}: cannot load the network in OpenVINO ({_first_line(err)})"
        ) from None
    request = compiled.create_infer_request()
    return lambda batch: request.infer({0: batch})[0].copy()


def open_session(model: bytes, options, bundle: Bundle, where: str):
    """An ONNX Runtime session for one of the bundle's networks, checked against its
    description. A file that ONNX Runtime cannot load (truncated, corrupt, not ONNX) is a
    BundleError."""
    import onnxruntime as ort

    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime's errors share no base class of their own
        raise BundleError(f"{where}: cannot load the network ({_first_line(err)})") from None
    check_network(session.get_inputs()[0].shape, session.get_outputs()[0].shape, bundle, where)
    return session


def check_network(input_shape, output_shape, bundle: Bundle, where: str) -> None:
    """Refuse a network whose input is not what the preprocessing gives, or whose number of
    outputs is not the number of labels (dimensions left open are checked on use)."""
    spec, n_labels = bundle.spec, len(bundle.labels)
    if len(input_shape) != 4:
        raise BundleError(f"{where}: the network input must be (N, C, S, S), not {input_shape}")
    fixed = [d for d in input_shape[1:] if isinstance(d, int)]
    if len(fixed) == 3 and tuple(fixed) != (spec.channels, spec.size, spec.size):
        raise BundleError(
            f"{where}: the network expects {describe_input(fixed[0], fixed[2])} but the "
            f"preprocessing in {META_FILE} gives {describe_input(spec.channels, spec.size)}"
        )
    outputs = output_shape[-1] if output_shape else None
    if isinstance(outputs, int) and outputs != n_labels:
        raise BundleError(
            f"{where}: {META_FILE} lists {n_labels} labels but the network has {outputs} outputs"
        )


def check_probabilities(
    probs: np.ndarray, bundle: Bundle, where: str, *, tolerance: float = SUM_TOLERANCE
) -> None:
    """Refuse outputs that are not one probability per label: the wrong width (a network
    whose output width is left open), values that are not finite or are negative, rows
    that do not sum to 1 within ``tolerance`` (raw scores or logits). Counting such values
    as classes, or as "unsure", would hide a broken network."""
    n_labels = len(bundle.labels)
    if probs.ndim != 2 or probs.shape[1] != n_labels:
        raise BundleError(
            f"{where}: {META_FILE} lists {n_labels} labels but the network gives "
            f"outputs of shape {probs.shape}"
        )
    problems = {
        "values that are not finite (NaN or infinite)": ~np.isfinite(probs).all(axis=1),
        "negative values": (probs < 0).any(axis=1),
    }
    with np.errstate(invalid="ignore", over="ignore"):
        sums = probs.astype(np.float64).sum(axis=1)
    problems[f"rows that do not sum to 1 (±{tolerance:g}; raw scores or logits?)"] = ~(
        np.abs(sums - 1.0) <= tolerance
    )
    for problem, rows in problems.items():
        if rows.any():
            first = int(np.flatnonzero(rows)[0])
            raise BundleError(
                f"{where}: the network's outputs are not probabilities: {problem} for "
                f"{int(rows.sum())} of {len(probs)} images (e.g. {_row(probs[first])})"
            )


def _row(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:.4g}" for v in values[:4])
    return f"[{shown}{', …' if len(values) > 4 else ''}]"


def _first_line(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
