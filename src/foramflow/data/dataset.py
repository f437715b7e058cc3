"""Labelled image sets: a folder per class, or a ParticleTrieur project file (method §2).

Classes with fewer than ``min_per_class`` images are dropped before training, as in the
paper (default 40), and listed so that the user knows what the model cannot recognise.
Entries named like images that cannot be read as files (dangling links, link loops,
names that are not UTF-8) are listed too, with the reason, rather than silently left out.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foramflow.errors import ForamflowError
from foramflow.io.class_names import (
    UNSURE,
    ClassNameError,
    canonical_class_name,
    class_key,
    distinct_class_names,
    same_class_error,
)
from foramflow.io.images import (
    ImageReadError,
    image_file_problem,
    is_image_file,
    is_utf8_path,
    printable_path,
)

MIN_PER_CLASS = 40
RESERVED_LABELS = frozenset({"unlabeled", "unlabelled", UNSURE})


class ImageSetError(ForamflowError, ValueError):
    """A labelled image set that a classifier cannot be trained or evaluated on."""


class ImageSetNotFound(ForamflowError, FileNotFoundError):
    """The folder of a labelled image set does not exist."""


@dataclass
class ImageSet:
    """Image paths with integer labels indexing ``classes`` (sorted class names)."""

    paths: list[Path]
    labels: np.ndarray
    classes: list[str]
    source: str
    dropped: dict[str, int] = field(default_factory=dict)
    skipped: dict[Path, str] = field(default_factory=dict)  # entry: why it is not in the set

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> np.ndarray:
        """Number of images per class, in ``classes`` order."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def subset(self, index: np.ndarray) -> ImageSet:
        return ImageSet(
            [self.paths[i] for i in index],
            self.labels[index],
            self.classes,
            self.source,
            self.dropped,
            self.skipped,
        )


def scan_folder(root: str | Path) -> list[tuple[Path, str]]:
    """(path, class) for each image under ``root/<class>/``, recursively; hidden entries skipped."""
    return list_folder(root)[0]


def list_folder(root: str | Path) -> tuple[list[tuple[Path, str]], dict[Path, str]]:
    """:func:`scan_folder`'s images, and ``{entry: reason}`` for what it had to leave out:
    entries named like images that are not files to read, class folders whose name is not
    UTF-8 or cannot name a class (:mod:`foramflow.io.class_names`). Class names are given
    in canonical form; two folders of the same class (``Globigerina``, ``globigerina``) are
    an :class:`ImageSetError`."""
    root = Path(root)
    if not root.is_dir():
        raise ImageSetNotFound(f"{root}: training-set folder not found")
    items, skipped = [], {}
    folders: dict[str, Path] = {}  # class key: the folder of that class
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not is_utf8_path(class_dir.name):
            skipped[class_dir] = "folder name is not valid UTF-8 (its images are left out)"
            continue
        try:
            name = canonical_class_name(class_dir.name)
        except ClassNameError as err:
            skipped[class_dir] = f"{err} (its images are left out)"
            continue
        other = folders.setdefault(class_key(name), class_dir)
        if other != class_dir:
            raise ImageSetError(f"{root}: {same_class_error(class_dir.name, other.name)}")
        for path in sorted(class_dir.rglob("*")):
            relative = path.relative_to(class_dir).parts
            if any(part.startswith(".") for part in relative):
                continue
            if not is_image_file(path) or path.is_dir():
                continue
            problem = image_file_problem(path)
            if problem is None:
                items.append((path, name))
            else:
                skipped[path] = problem
    return items, skipped


def scan_particletrieur(
    xml_path: str | Path, *, include_predictions: bool = False
) -> tuple[list[tuple[Path, str]], int]:
    """(path, class) for every hand-labelled image of a ParticleTrieur project file (and
    every predicted one with ``include_predictions``), and the number of predictions left
    out. A prediction is an image ParticleTrieur tagged ``auto``."""
    from foramflow.io.particletrieur import read_project

    records, _ = read_project(xml_path)
    labelled = [r for r in records if r.label and r.label.lower() not in RESERVED_LABELS]
    kept = [r for r in labelled if include_predictions or not r.predicted]
    items = [(r.path, r.label) for r in kept]
    try:
        distinct_class_names(sorted({label for _, label in items}))
    except ClassNameError as err:
        raise ImageSetError(f"{xml_path}: {err}") from None
    return items, len(labelled) - len(kept)


def load_image_set(
    source: str | Path, *, min_per_class: int = MIN_PER_CLASS, include_predictions: bool = False
) -> ImageSet:
    """Read a folder-per-class set or a ParticleTrieur ``.xml`` project; drop rare classes.

    From a project, only the images a person labelled are read, unless
    ``include_predictions`` asks for the network's predictions too.
    """
    source = Path(source)
    skipped: dict[Path, str] = {}
    if source.suffix.lower() == ".xml":
        items, predictions = scan_particletrieur(source, include_predictions=include_predictions)
    else:
        (items, skipped), predictions = list_folder(source), 0
    if not items:
        hint = f" ({predictions} predicted; --include-predictions uses them)" if predictions else ""
        raise ImageSetError(f"{source}: no labelled images found{hint}{_skipped_note(skipped)}")
    counts = Counter(label for _, label in items)
    dropped = {name: n for name, n in sorted(counts.items()) if n < min_per_class}
    classes = sorted(name for name in counts if name not in dropped)
    if len(classes) < 2:
        raise ImageSetError(
            f"{source}: {len(classes)} class(es) with at least {min_per_class} images; "
            "a classifier needs two or more (lower --min-per-class?)"
        )
    index = {name: i for i, name in enumerate(classes)}
    kept = [(path, index[label]) for path, label in items if label in index]
    return ImageSet(
        paths=[path for path, _ in kept],
        labels=np.array([label for _, label in kept], dtype=np.int64),
        classes=classes,
        source=str(source),
        dropped=dropped,
        skipped=skipped,
    )


def _skipped_note(skipped: dict[Path, str]) -> str:
    if not skipped:
        return ""
    path, reason = next(iter(skipped.items()))
    return f" ({len(skipped)} entries left out, such as {printable_path(path)}: {reason})"


def image_set_hash(image_set: ImageSet) -> str:
    """SHA-256 over every image's bytes and class, in a stable order: identifies a training set.

    Give it the images actually used (:meth:`ImageSet.subset`), not those left out."""
    digest = hashlib.sha256()
    for path, label in sorted(zip(image_set.paths, image_set.labels), key=lambda t: str(t[0])):
        digest.update(image_set.classes[label].encode())
        digest.update(hashlib.sha256(_read_for_hash(Path(path))).digest())
    return digest.hexdigest()


def _read_for_hash(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ImageReadError(
            path, f"cannot read it for the training-set hash ({err.strerror or err})"
        ) from err
