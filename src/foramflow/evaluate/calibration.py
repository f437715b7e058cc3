"""Probability calibration and the choice of the "unsure" threshold (method §7, extended).

The paper fixes the threshold at 0.8, but what 0.8 means depends on how over-confident the
network is, and the error a study can tolerate differs between studies. Here:

1. **Temperature scaling** (Guo et al. 2017, *On calibration of modern neural networks*,
   ICML): one scalar T fitted on labelled validation images by minimising the negative
   log-likelihood of ``softmax(log p / T)``. The bundle outputs probabilities; their logs are
   the logits up to a per-image constant, which softmax ignores, so this is exact temperature
   scaling. One parameter cannot overfit a validation set of a few hundred images, and it
   never changes the top class, so accuracy is untouched. Fitted with
   :func:`scipy.optimize.minimize_scalar` over log T (T > 0 without constraints).
2. **Coverage versus accuracy** (the risk–coverage curve; Geifman & El-Yaniv 2017,
   *Selective classification for deep neural networks*, NeurIPS): for each threshold, the
   fraction of images accepted and the accuracy among them.
3. **Threshold for a target precision**: the lowest threshold whose accepted images reach the
   target, i.e. the largest coverage at that precision; per class, the same among the images
   predicted as that class, so that easy classes are not held back by hard ones.

Thresholds obey the classify rule (score must *exceed* the threshold, which lies in
(0.5, 1.0]): the chosen value lies halfway between the lowest accepted and the highest
rejected score, at least 0.501; a class that never reaches the target gets 1.0 (always
unsure). Calibration needs the bundle's raw probabilities, so an existing calibration is
ignored when refitting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax

from foramflow.bundle.engine import Engine, apply_temperature
from foramflow.bundle.folder import Bundle
from foramflow.bundle.predict import predict_paths
from foramflow.bundle.schema import TEMPERATURE_RANGE, BundleError, Calibration
from foramflow.bundle.validation import top_probability_reference
from foramflow.errors import ForamflowError
from foramflow.progress import Progress, Quiet

MIN_THRESHOLD = 0.501  # the classify rule needs a threshold above 0.5
NEVER = 1.0  # a score never exceeds 1.0: the class is always unsure
_EPS = 1e-12


class CalibrationError(ForamflowError, ValueError):
    """The validation images cannot calibrate this bundle."""


def negative_log_likelihood(probs, labels, temperature: float = 1.0) -> float:
    """Mean −log p(true class) after temperature scaling of ``probs`` (N, K)."""
    logp = log_softmax(np.log(np.clip(probs, _EPS, None)) / temperature, axis=1)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(probs, labels) -> float:
    """The temperature T in [0.05, 20] that minimises the validation NLL."""
    probs, labels = np.asarray(probs, float), np.asarray(labels)
    fit = minimize_scalar(
        lambda log_t: negative_log_likelihood(probs, labels, float(np.exp(log_t))),
        bounds=(np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(fit.x))


def at_bound(temperature: float) -> bool:
    """Whether a fitted temperature ran to a bound of :data:`TEMPERATURE_RANGE`: the NLL
    still fell beyond it, so the images say nothing sane about the temperature."""
    low, high = TEMPERATURE_RANGE
    return not low * 1.01 < temperature < high / 1.01


def fit_class_bias(probs, labels) -> np.ndarray:
    """Per-class log-offsets b (K,), centred, minimising the NLL of ``softmax(log p + b)``.

    Temperature scaling fixes over-confidence but not a tilt towards some classes. Training
    with class weights (method §5) tilts the network towards rare classes: its outputs are
    posteriors under a re-weighted prior, which inflates the counts of rare look-alikes and
    misleads EM prior adjustment. Fitted on validation images drawn with the training prior,
    ``b`` undoes that tilt; it is "bias-corrected temperature scaling" (Alexandari, Kundaje &
    Shrikumar 2020, *Maximum likelihood with bias-corrected calibration is hard-to-beat at
    label shift adaptation*, ICML), which they found the best calibration for EM. Classify
    leaves b out (its thresholds act on the temperature-scaled scores); the abundance
    correction applies it before EM.
    """
    logp = np.log(np.clip(np.asarray(probs, float), _EPS, None))
    labels = np.asarray(labels)
    onehot = np.eye(logp.shape[1])[labels]

    def loss(bias):
        shifted = log_softmax(logp + bias, axis=1)
        grad = (np.exp(shifted) - onehot).mean(axis=0)
        return -shifted[np.arange(len(labels)), labels].mean(), grad

    bias = minimize(loss, np.zeros(logp.shape[1]), jac=True, method="L-BFGS-B").x
    return bias - bias.mean()


#: Fewer validation images than this, or none wrong, and training leaves the network's own
#: probabilities: a temperature fitted on them would be a guess (with no error at all the
#: fit runs to its bound and every image would look certain).
MIN_IMAGES_TO_CALIBRATE = 100


def validation_calibration(probs, labels) -> Calibration | None:
    """The temperature a training run fits on its own validation split, or None.

    Label smoothing, dropout and averaging over turns leave a network under-confident: on
    84 plankton classes half the validation images stayed under the paper's 0.8 threshold
    although 97 % of those above it were right. A temperature fitted on the split (the
    same images the run evaluates on, scored as classify scores them) makes a probability
    mean what it says, which the "unsure" threshold and the abundance step's EM both
    assume; ``foramflow calibrate`` on other labelled images refits it. No class offsets
    here: 100 images cannot fix one per class.
    """
    probs, labels = np.asarray(probs, float), np.asarray(labels)
    if len(labels) < MIN_IMAGES_TO_CALIBRATE or np.all(probs.argmax(axis=1) == labels):
        return None
    temperature = fit_temperature(probs, labels)
    if at_bound(temperature):
        return None
    calibrated = apply_temperature(probs, temperature)
    return Calibration(
        method="temperature scaling on the training run's validation split",
        temperature=temperature,
        n_images=len(labels),
        nll_before=negative_log_likelihood(probs, labels),
        nll_after=negative_log_likelihood(probs, labels, temperature),
        ece_before=expected_calibration_error(probs, labels),
        ece_after=expected_calibration_error(calibrated, labels),
        top_probability_quantiles=top_probability_reference(calibrated.max(axis=1)),
    )


def apply_class_bias(probs, bias) -> np.ndarray:
    """``softmax(log p + b)``: probabilities with the fitted class offsets."""
    logp = np.log(np.clip(np.asarray(probs, float), _EPS, None)) + np.asarray(bias, float)
    return np.exp(log_softmax(logp, axis=1))


def expected_calibration_error(probs, labels, *, bins: int = 15) -> float:
    """ECE: mean |accuracy − confidence| over equal-width confidence bins, weighted by size
    (Naeini et al. 2015; the measure used by Guo et al. 2017)."""
    probs = np.asarray(probs)
    top = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    which = np.minimum((top * bins).astype(int), bins - 1)
    gap = np.bincount(which, weights=correct - top, minlength=bins)
    return float(np.abs(gap).sum() / len(top))


def coverage_accuracy_curve(probs, labels) -> pd.DataFrame:
    """Coverage and accuracy when accepting images whose top probability is ≥ each score.

    One row per distinct top score, from the highest (coverage ~0) to the lowest (coverage 1).
    """
    probs = np.asarray(probs)
    top = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    order = np.argsort(-top, kind="stable")
    top, correct = top[order], correct[order]
    accepted = np.arange(1, len(top) + 1)
    last_of_tie = np.append(top[1:] != top[:-1], True)
    return pd.DataFrame(
        {
            "threshold": top[last_of_tie],
            "coverage": accepted[last_of_tie] / len(top),
            "accuracy": np.cumsum(correct)[last_of_tie] / accepted[last_of_tie],
        }
    )


def threshold_for_precision(scores, correct, target: float) -> float:
    """Lowest threshold (classify rule: score > threshold) whose accepted images reach
    ``target`` precision; :data:`NEVER` when no threshold does."""
    scores = np.asarray(scores, float)
    order = np.argsort(-scores, kind="stable")
    scores, correct = scores[order], np.asarray(correct, bool)[order]
    if not len(scores):
        return NEVER
    precision = np.cumsum(correct) / np.arange(1, len(scores) + 1)
    last_of_tie = np.append(scores[1:] != scores[:-1], True)
    good = np.flatnonzero(last_of_tie & (precision >= target))
    if not len(good):
        return NEVER
    k = good[-1]  # accept scores[0..k]
    below = scores[k + 1] if k + 1 < len(scores) else 0.0
    return float(min(NEVER, max(MIN_THRESHOLD, (scores[k] + below) / 2.0)))


def choose_thresholds(
    probs, labels, class_names: Sequence[str], *, target: float, per_class: bool
) -> tuple[float, dict[str, float] | None]:
    """Global threshold, and per-class thresholds when ``per_class``."""
    probs = np.asarray(probs)
    top, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == np.asarray(labels)
    threshold = threshold_for_precision(top, correct, target)
    if not per_class:
        return threshold, None
    return threshold, {
        name: threshold_for_precision(top[predicted == k], correct[predicted == k], target)
        for k, name in enumerate(class_names)
    }


def plot_coverage_accuracy(before: pd.DataFrame, after: pd.DataFrame, *, threshold, target, path):
    """Accuracy against coverage, before and after temperature scaling, with the choice."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(before["coverage"], before["accuracy"], color="0.6", label="uncalibrated")
    ax.plot(after["coverage"], after["accuracy"], color="tab:blue", label="calibrated")
    chosen = after[after["threshold"] > threshold]
    if len(chosen):
        ax.plot(
            chosen["coverage"].iloc[-1],
            chosen["accuracy"].iloc[-1],
            "o",
            color="tab:red",
            label=f"threshold {threshold:.3f}",
        )
    ax.axhline(target, color="tab:red", linestyle=":", linewidth=1, label="target precision")
    ax.set_xlabel("coverage (fraction of images accepted)")
    ax.set_ylabel("accuracy of accepted images")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.savefig(path, dpi=130)


@dataclass
class ValidationImages:
    """Labelled validation images: paths and label indices into the bundle's labels."""

    paths: list[Path]
    labels: np.ndarray
    unknown_folders: list[str] = field(default_factory=list)


def validation_images(bundle_path, validation_dir) -> ValidationImages:
    """Images under ``validation_dir/<label>/`` for the bundle's labels."""
    from foramflow.data.dataset import scan_folder

    bundle = Bundle.load(bundle_path)
    if not bundle.path.is_dir():  # refused now, not after predicting every image
        raise BundleError(f"{bundle_path}: unpack the .zip to calibrate the bundle")
    labels = bundle.labels
    index = {name: i for i, name in enumerate(labels)}
    items = scan_folder(validation_dir)
    unknown = sorted({name for _, name in items if name not in index})
    kept = [(path, index[name]) for path, name in items if name in index]
    if not kept:
        raise CalibrationError(
            f"{validation_dir}: no images in folders named as the labels "
            f"of {bundle_path} ({', '.join(labels)})"
        )
    return ValidationImages(
        paths=[p for p, _ in kept], labels=np.array([k for _, k in kept]), unknown_folders=unknown
    )


@dataclass
class CalibrationResult:
    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    n_images: int
    threshold: float
    coverage: float
    accuracy: float
    class_thresholds: dict[str, float] | None
    unreachable: list[str]
    curve_png: Path
    curve_csv: Path
    errors: list[tuple[Path, str]]


def calibrate_bundle(
    bundle: str | Path,
    images: str | Path,
    out: str | Path | None = None,
    *,
    target_precision: float = 0.95,
    per_class: bool = False,
    progress: Progress | None = None,
) -> CalibrationResult:
    """Fit temperature scaling on the labelled images under ``images/<label>/``, choose
    thresholds, and store both in the bundle.

    Folders not named as a label of the bundle are skipped, with a warning. The
    coverage-accuracy curve goes to ``out`` (default: the bundle's calibration folder)."""
    progress = progress or Quiet()
    listed = validation_images(bundle, images)
    for folder in listed.unknown_folders:
        where = Path(images) / folder
        progress.message(f"warning: {where}: not a bundle label, skipped", warning=True)
    task = progress.task("predicting", len(listed.paths))
    loaded = Bundle.load(bundle)
    probs, labels, errors = _raw_probabilities(loaded, listed, task.advance)
    task.done()
    bundle = loaded
    if np.all(probs.argmax(axis=1) == labels):
        raise CalibrationError(
            f"{bundle.path}: all {len(labels)} validation images are classified right: the "
            "NLL falls without end as the temperature falls, so none can be fitted; "
            "calibrate on more, or other, labelled images"
        )
    temperature = fit_temperature(probs, labels)
    if at_bound(temperature):
        raise CalibrationError(
            f"{bundle.path}: the fitted temperature runs to the bound of "
            f"[{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}] ({temperature:.3g}): the "
            f"{len(labels)} validation images are (nearly) all right or all wrong with "
            "confidence; calibrate on more, or other, labelled images"
        )
    calibrated = apply_temperature(probs, temperature)
    threshold, class_thresholds = choose_thresholds(
        calibrated, labels, bundle.labels, target=target_precision, per_class=per_class
    )
    curve_csv, curve_png = _write_curves(
        probs,
        calibrated,
        labels,
        out_dir=Path(out) if out is not None else bundle.calibration_dir,
        threshold=threshold,
        target=target_precision,
    )
    accepted = calibrated.max(axis=1) > threshold
    correct = calibrated.argmax(axis=1) == labels
    result = CalibrationResult(
        temperature=temperature,
        nll_before=negative_log_likelihood(probs, labels),
        nll_after=negative_log_likelihood(probs, labels, temperature),
        ece_before=expected_calibration_error(probs, labels),
        ece_after=expected_calibration_error(calibrated, labels),
        n_images=len(labels),
        threshold=threshold,
        coverage=float(accepted.mean()),
        accuracy=float(correct[accepted].mean()) if accepted.any() else float("nan"),
        class_thresholds=class_thresholds,
        unreachable=[k for k, v in (class_thresholds or {}).items() if v == NEVER]
        or (["all classes"] if threshold == NEVER else []),
        curve_png=curve_png,
        curve_csv=curve_csv,
        errors=errors,
    )
    bundle.update(
        calibration=_calibration_record(
            result, calibrated, labels, bundle.labels, target_precision
        ),
        threshold=threshold,
        class_thresholds=class_thresholds,
    )
    return result


def _raw_probabilities(
    bundle: Bundle, images: ValidationImages, on_image: Callable[[], None] | None
) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
    """The network's own probabilities (an earlier calibration left out: refitting ignores
    it) of the readable images, their labels, and the unreadable images with why."""
    engine = Engine(bundle, precision="fp32", calibrated=False)
    probs, labels, errors = [], [], []
    predictions = predict_paths(engine, images.paths)
    for (path, p, error), label in zip(predictions, images.labels, strict=True):
        if on_image:
            on_image()
        if error is not None:
            errors.append((path, error))
            continue
        probs.append(p)
        labels.append(label)
    if len(probs) < 2:
        raise CalibrationError("fewer than two readable validation images")
    return np.asarray(probs, float), np.asarray(labels), errors


def _write_curves(
    probs, calibrated, labels, *, out_dir: Path, threshold: float, target: float
) -> tuple[Path, Path]:
    """The coverage-accuracy curve after calibration (CSV), and before and after (PNG)."""
    from foramflow.io.tables import write_csv

    before = coverage_accuracy_curve(probs, labels)
    after = coverage_accuracy_curve(calibrated, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    curve_csv, curve_png = out_dir / "coverage_accuracy.csv", out_dir / "coverage_accuracy.png"
    write_csv(after, curve_csv)
    plot_coverage_accuracy(before, after, threshold=threshold, target=target, path=curve_png)
    return curve_csv, curve_png


def _calibration_record(
    result: CalibrationResult, calibrated, labels, class_names: list[str], target: float
) -> Calibration:
    """What the bundle keeps of the fit: the temperature, the class offsets that the
    abundance correction applies, and the validation top probabilities for drift checks."""
    class_bias = fit_class_bias(calibrated, labels)
    return Calibration(
        method="temperature scaling",
        temperature=result.temperature,
        n_images=result.n_images,
        nll_before=result.nll_before,
        nll_after=result.nll_after,
        ece_before=result.ece_before,
        ece_after=result.ece_after,
        class_bias=dict(zip(class_names, map(float, class_bias), strict=True)),
        target_precision=target,
        top_probability_quantiles=top_probability_reference(calibrated.max(axis=1)),
    )
