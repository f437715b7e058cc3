"""Labelled image sets: a folder per class, or a ParticleTrieur project file (METHOD §2).

Classes with fewer than ``min_per_class`` images are dropped before training, as in the
paper (default 40), and listed so that the user knows what the model cannot recognise.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foramflow.io.images import is_image_file

MIN_PER_CLASS = 40
RESERVED_LABELS = frozenset({"unlabeled", "unlabelled", "unsure"})


@dataclass
class ImageSet:
    """Image paths with integer labels indexing ``classes`` (sorted class names)."""

    paths: list[Path]
    labels: np.ndarray
    classes: list[str]
    source: str
    dropped: dict[str, int] = field(default_factory=dict)

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
        )


def scan_folder(root: str | Path) -> list[tuple[Path, str]]:
    """(path, class) for each image under ``root/<class>/``, recursively; hidden entries skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: training-set folder not found")
    items = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.rglob("*")):
            relative = path.relative_to(class_dir).parts
            if any(part.startswith(".") for part in relative):
                continue
            if path.is_file() and is_image_file(path):
                items.append((path, class_dir.name))
    return items


def scan_particletrieur(xml_path: str | Path) -> list[tuple[Path, str]]:
    """(path, class) for every labelled image of a ParticleTrieur project file."""
    from foramflow.io.particletrieur import read_project

    records, _ = read_project(xml_path)
    return [
        (record.path, record.label)
        for record in records
        if record.label and record.label.lower() not in RESERVED_LABELS
    ]


def load_image_set(source: str | Path, *, min_per_class: int = MIN_PER_CLASS) -> ImageSet:
    """Read a folder-per-class set or a ParticleTrieur ``.xml`` project; drop rare classes."""
    source = Path(source)
    is_project = source.suffix.lower() == ".xml"
    items = scan_particletrieur(source) if is_project else scan_folder(source)
    if not items:
        raise ValueError(f"{source}: no labelled images found")
    counts = Counter(label for _, label in items)
    dropped = {name: n for name, n in sorted(counts.items()) if n < min_per_class}
    classes = sorted(name for name in counts if name not in dropped)
    if len(classes) < 2:
        raise ValueError(
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
    )


def image_set_hash(image_set: ImageSet) -> str:
    """SHA-256 over every image's bytes and class, in a stable order: identifies a training set."""
    digest = hashlib.sha256()
    for path, label in sorted(zip(image_set.paths, image_set.labels), key=lambda t: str(t[0])):
        digest.update(image_set.classes[label].encode())
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()
