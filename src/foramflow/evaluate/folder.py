"""``foramflow evaluate`` as a library step: a bundle on a labelled folder → a report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foramflow.bundle.folder import Bundle
from foramflow.data.arrays import preprocess_all
from foramflow.data.dataset import ImageSet, load_image_set
from foramflow.errors import ForamflowError
from foramflow.evaluate.evaluation import (
    INFERENCE_LABEL,
    Evaluation,
    evaluate_bundle,
    evaluation_engine,
    write_evaluation,
)
from foramflow.progress import Progress, Quiet


class EvaluationError(ForamflowError, ValueError):
    """The labelled images cannot evaluate this bundle; the message names the folder."""


@dataclass
class EvaluationResult:
    """What an evaluation found, and where its report lies."""

    evaluation: Evaluation
    report: Path
    n_images: int
    unknown_classes: list[str] = field(default_factory=list)  # left out
    skipped: dict[Path, str] = field(default_factory=dict)  # unreadable images, with why

    @property
    def metrics(self) -> dict:
        return self.evaluation.metrics


def evaluate_folder(
    bundle: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Evaluate a bundle on a labelled image set (a folder per class) and write the report,
    tables and figures into ``out``.

    Classes of the set that the bundle does not know are reported and left out; unreadable
    images are listed in the report. ``workers``: image-decoding processes (default: one per
    core).
    """
    progress = progress or Quiet()
    loaded = Bundle.load(bundle)
    engine = evaluation_engine(loaded)  # a network that cannot be loaded is refused first
    image_set = _read_image_set(images)
    for note in loaded.notes:
        progress.message(f"note: {loaded.path}: {note}", warning=True)
    labels = loaded.labels
    unknown = sorted(set(image_set.classes) - set(labels))
    if unknown:
        progress.message(f"left out, unknown to the bundle: {', '.join(unknown)}", warning=True)
    paths, y_true = _known_images(image_set, labels, images)
    name = Path(images).name
    arrays, ok, skipped = preprocess_all(paths, loaded.spec, workers=workers)
    evaluation = evaluate_bundle(engine, arrays, y_true[ok])
    m = evaluation.metrics
    report = write_evaluation(
        out,
        evaluation,
        arrays,
        classes=labels,
        title=f"foramflow evaluation: {Path(bundle).name} on {name}",
        bundle_path=Path(bundle).resolve(),
        created=time.strftime("%Y-%m-%d %H:%M"),
        versions=loaded.meta.software or {},
        summary=[
            ("images", str(len(arrays))),
            ("accuracy", f"{m['accuracy']:.4f}"),
            ("mean F1 over classes", f"{m['macro_f1']:.4f}"),
            (INFERENCE_LABEL, evaluation.inference_summary),
        ],
        skipped=skipped,
    )
    return EvaluationResult(evaluation, report, len(arrays), unknown, skipped)


def _read_image_set(data: str | Path) -> ImageSet:
    try:
        return load_image_set(data, min_per_class=1)
    except (OSError, ValueError) as err:
        raise EvaluationError(str(err)) from None


def _known_images(
    image_set: ImageSet, labels: list[str], data: str | Path
) -> tuple[list[Path], np.ndarray]:
    """The images of classes the bundle knows, and their label indices in the bundle."""
    keep = [i for i, k in enumerate(image_set.labels) if image_set.classes[k] in labels]
    if not keep:
        raise EvaluationError(f"{data}: none of its classes is known to the bundle")
    y_true = np.array([labels.index(image_set.classes[image_set.labels[i]]) for i in keep])
    return [image_set.paths[i] for i in keep], y_true
