"""Exports of a labelling project, and import of ParticleTrieur projects.

* a training set: one folder per class holding copies or hard links of the validated
  images (the layout :mod:`foramflow.training` reads), plus ``labels.csv``;
* a CSV of every image's label, status, prediction, sample, depth and class group;
* a ParticleTrieur project file; an EcoTaxa import folder or zip.

A training set copies only files inside their registered image root once links are
followed (the rule of the app's ``/files`` route). Every file an export writes lies inside
the folder it was given: each output path is
checked once links are followed, and single files are renamed into place, so a link
left at the target is replaced rather than written through.
"""

from __future__ import annotations

import csv
import os
import shutil
from datetime import datetime
from pathlib import Path

from foramflow.errors import OutputError
from foramflow.io.class_names import ClassNameError, distinct_class_names
from foramflow.io.ecotaxa import EcoTaxaObject, write_ecotaxa
from foramflow.io.files import atomic_write
from foramflow.io.particletrieur import (
    AUTO,
    RESERVED_LABELS,
    ParticleRecord,
    ProjectError,
    Taxon,
    read_project,
    write_project,
)
from foramflow.io.tables import CSV_UNKNOWN_NUMBER
from foramflow.label.store import InvalidName, LabelStore, PathRefused, class_name, sample_name

CSV_COLUMNS = (
    "path", "label", "status", "validated_by", "validated_at", "pred_label", "pred_score",
    "pred_model", "sample", "depth_cm", "group",
)  # fmt: skip
NUMBER_COLUMNS = ("pred_score", "depth_cm")  # unknown: NaN, so readers type them as numbers


def _rows_with_paths(store: LabelStore) -> list[tuple[dict, Path]]:
    paths = store.image_paths()
    return [(dict(row), paths[row["id"]]) for row in store.all_rows()]


def export_labels_csv(store: LabelStore, csv_path: str | Path) -> int:
    """Write one row per image; return the number of rows.

    The table follows :mod:`foramflow.io.tables`: an unknown number is ``NaN``, unknown
    text an empty cell."""
    groups = {c["name"]: c["group"] for c in store.classes()}
    rows = _rows_with_paths(store)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for row, path in rows:
                values = {**row, "path": str(path), "group": groups.get(row["current"], "")}
                writer.writerow(_cell(values[c], c) for c in CSV_COLUMNS)

    atomic_write(csv_path, write)
    return len(rows)


def _cell(value, column: str):
    if value is None:
        return CSV_UNKNOWN_NUMBER if column in NUMBER_COLUMNS else ""
    return value


def export_training_set(
    store: LabelStore, dest: str | Path, *, hard_links: bool = False
) -> dict[str, int]:
    """Copy (or hard-link) every validated image into ``dest/<class>/``; return counts.

    The reserved labels ``unlabeled`` and ``unsure`` are not classes and are left out.
    File names keep the original name, prefixed by the sample so names from different
    samples cannot collide. ``dest/labels.csv`` lists every image of the project.
    Nothing is written when one of the files would land outside ``dest``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    plan = _training_set_plan(store, dest)
    labels_csv = _inside(dest.resolve(), dest / "labels.csv")
    counts: dict[str, int] = {}
    for label, source, target in plan:
        target.parent.mkdir(exist_ok=True)
        _place(source, target, hard_link=hard_links)
        counts[label] = counts.get(label, 0) + 1
    export_labels_csv(store, labels_csv)
    return counts


def _training_set_plan(store: LabelStore, dest: Path) -> list[tuple[str, Path, Path]]:
    """(class, image, copy) for every validated image; each copy checked to stay in ``dest``."""
    root = dest.resolve()
    plan, taken = [], set()
    for row, path in _rows_with_paths(store):
        label = row["label"]
        if label is None or label in RESERVED_LABELS:
            continue
        source = _in_image_root(store, row, path)
        folder = _inside(root, dest / label)
        name = f"{row['sample']}__{path.name}" if row["sample"] else path.name
        target = _inside(root, folder / name)
        if target in taken or target.exists() or target.is_symlink():
            target = _inside(root, folder / f"{target.stem}_{row['id']}{target.suffix}")
        taken.add(target)
        plan.append((label, source, target))
    return plan


def _in_image_root(store: LabelStore, row: dict, path: Path) -> Path:
    """The image's real path, refused (as the app's ``/files`` route refuses it) when links
    lead it out of its registered image root: a registered image replaced by a link to
    another file must not be copied into a training set."""
    try:
        return store.resolve(row["root_id"], row["relpath"])
    except PathRefused:
        raise OutputError(
            f"{path}: leads out of its image root once links are followed; nothing exported"
        ) from None


def _place(source: Path, target: Path, *, hard_link: bool) -> None:
    if hard_link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system: fall back to a copy
            pass
    shutil.copy2(source, target)


def _inside(root: Path, path: Path) -> Path:
    """``path`` when it stays inside the resolved folder ``root`` once links are followed."""
    if not path.resolve().is_relative_to(root):
        raise OutputError(f"{path}: leads out of the export folder {root}, nothing written")
    return path


def project_records(store: LabelStore) -> tuple[list[ParticleRecord], list[Taxon]]:
    """The project as ParticleTrieur records and taxa (groups kept).

    A validated image carries its label, by its validator (``val_by`` and, as
    ParticleTrieur writes a person's label, the classifier id); a predicted one its
    prediction, tagged ``auto``. The prediction of a validated image is not written:
    ParticleTrieur keeps one classification per image.
    """
    records = []
    for row, path in _rows_with_paths(store):
        validated = row["label"] is not None
        predicted = not validated and row["pred_label"] is not None
        records.append(
            ParticleRecord(
                path=path,
                label=row["current"],
                sample=row["sample"],
                depth=row["depth_cm"],
                guid=row["guid"],
                resolution=row["resolution"],
                validated_by=row["validated_by"] if validated else None,
                classifier=row["validated_by"] if validated else row["pred_model"],
                classifications=({row["pred_label"]: row["pred_score"]} if predicted else {}),
                width=row["width"],
                height=row["height"],
                tags=[AUTO] if predicted else [],
            )
        )
    taxa = [Taxon(c["name"], group=c["group"]) for c in store.classes()]
    return records, taxa


def export_particletrieur(store: LabelStore, xml_path: str | Path) -> int:
    records, taxa = project_records(store)
    write_project(xml_path, records, taxa)
    return len(records)


def import_particletrieur(store: LabelStore, xml_path: str | Path) -> int:
    """Add a ParticleTrieur project's images, classes, groups and labels; return images added.

    An image tagged ``auto`` holds a prediction, of the classifier named in the file (its
    best class, ``unsure`` aside); any other classification is a person's label, validated
    by ``val_by`` or else by the classifier id, which ParticleTrieur sets to the person who
    labelled (stamped with the time of import).
    """
    records, taxa = read_project(xml_path)
    _check_names(xml_path, records, taxa)
    missing = [r.path for r in records if not r.path.is_file()]
    if missing:
        raise ProjectError(f"{xml_path}: {len(missing)} images not found, e.g. {missing[0]}")
    for taxon in taxa:
        if taxon.is_class and taxon.code not in RESERVED_LABELS:
            store.create_class(taxon.code, group=taxon.group)
    at = datetime.now().astimezone().isoformat(timespec="seconds")
    rows = []
    for r in records:
        human = r.label is not None and not r.predicted
        guess = _prediction(r) if r.predicted else None
        rows.append(
            {
                "path": r.path,
                "sample": r.sample,
                "depth_cm": r.depth,
                "width": r.width,
                "height": r.height,
                "guid": r.guid,
                "resolution": r.resolution,
                "label": r.label if human else None,
                "validated_by": (r.validated_by or r.classifier) if human else None,
                "validated_at": at if human else None,
                "pred_label": guess[0] if guess else None,
                "pred_score": guess[1] if guess else None,
                "pred_model": (r.classifier or "particletrieur") if guess else None,
            }
        )
    return store.add_image_records(rows)


def _prediction(record: ParticleRecord) -> tuple[str, float] | None:
    """The best class a network gave and its score; ``unsure`` (a score under the network's
    threshold) is not a class, so the best class under it is kept."""
    scores = {c: v for c, v in record.classifications.items() if c not in RESERVED_LABELS}
    if not scores:
        return None
    best = max(scores, key=scores.__getitem__)
    return best, scores[best]


def _check_names(xml_path: str | Path, records: list[ParticleRecord], taxa: list[Taxon]) -> None:
    """Refuse a project file whose class or sample names the store cannot keep."""
    for taxon in taxa:
        if taxon.is_class and taxon.code not in RESERVED_LABELS:
            try:
                class_name(taxon.code)
            except InvalidName as err:
                raise InvalidName(f"{xml_path}: taxon: {err}") from None
    for number, record in enumerate(records, start=1):
        try:
            if record.label is not None:
                class_name(record.label)
            sample_name(record.sample)
        except InvalidName as err:
            raise InvalidName(f"{xml_path}: image {number}: {err}") from None
    used = {taxon.code for taxon in taxa if taxon.is_class} | {r.label for r in records if r.label}
    try:
        distinct_class_names(sorted(used), allowed=RESERVED_LABELS)
    except ClassNameError as err:
        raise InvalidName(f"{xml_path}: {err}") from None


def export_ecotaxa(store: LabelStore, out: str | Path) -> Path:
    """EcoTaxa's import folder, or zip when ``out`` ends in ``.zip``, with every labelled
    (validated or predicted) image: a validated one with its validator, a predicted one
    with the model that predicted it."""
    objects = []
    for row, path in _rows_with_paths(store):
        if row["current"] is None or row["current"] in RESERVED_LABELS:
            continue
        validated = row["label"] is not None
        objects.append(
            EcoTaxaObject(
                path=path,
                category=row["current"],
                status="validated" if validated else "predicted",
                annotator=row["validated_by"] if validated else None,
                annotated_at=(
                    datetime.fromisoformat(row["validated_at"])
                    if validated and row["validated_at"]
                    else None
                ),
                sample=row["sample"],
                depth_m=row["depth_cm"] / 100 if row["depth_cm"] is not None else None,
                score=None if validated else row["pred_score"],
                model=None if validated else row["pred_model"],
            )
        )
    return write_ecotaxa(out, objects, name=store.project_dir.name)
