"""Exports: training-set folders (copies, hard links), CSV, ParticleTrieur round trip."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

from foramflow.io.particletrieur import read_project
from foramflow.label import export
from foramflow.label.store import LabelStore


def labelled(store: LabelStore) -> LabelStore:
    store.set_labels([1, 3], "dark", user="anna")
    store.set_labels([2], "bright", user="ben")
    store.set_labels([4], "unsure", user="ben")
    store.set_predictions([(5, "dark", 0.9, 0.8)], model="m1")
    store.set_group("dark", "benthic")
    return store


def test_training_set_folders(store: LabelStore, tmp_path: Path):
    counts = export.export_training_set(labelled(store), tmp_path / "train")
    assert counts == {"dark": 2, "bright": 1}  # 'unsure' is not a class; predictions are not labels
    train = tmp_path / "train"
    assert sorted(p.name for p in train.iterdir()) == ["bright", "dark", "labels.csv"]
    assert sorted(p.name for p in (train / "dark").iterdir()) == [
        "S1_10cm__p00.png",
        "S1_10cm__p02.png",
    ]
    assert [p.name for p in (train / "bright").iterdir()] == ["S1_10cm__p01.png"]


def test_hard_links_share_the_file(store: LabelStore, image_root: Path, tmp_path: Path):
    store.set_labels([1], "dark", user="anna")
    export.export_training_set(store, tmp_path / "t", hard_links=True)
    linked = tmp_path / "t" / "dark" / "S1_10cm__p00.png"
    assert linked.stat().st_ino == (image_root / "S1_10cm" / "p00.png").stat().st_ino


def test_labels_csv(store: LabelStore, tmp_path: Path):
    assert export.export_labels_csv(labelled(store), tmp_path / "l.csv") == 12
    with open(tmp_path / "l.csv") as handle:
        rows = list(csv.DictReader(handle))
    by_name = {Path(r["path"]).name + r["sample"]: r for r in rows}
    first = by_name["p00.pngS1_10cm"]
    assert (first["label"], first["status"], first["validated_by"]) == ("dark", "validated", "anna")
    assert (first["group"], first["depth_cm"]) == ("benthic", "10.0")
    pred = by_name["p04.pngS1_10cm"]
    assert (pred["status"], pred["pred_label"], pred["pred_score"]) == ("predicted", "dark", "0.9")


def test_particletrieur_export_then_import(store: LabelStore, tmp_path: Path):
    xml_path = tmp_path / "pt" / "project.xml"
    xml_path.parent.mkdir()
    assert export.export_particletrieur(labelled(store), xml_path) == 12
    records, taxa = read_project(xml_path)
    by_path = {r.path: r for r in records}
    first = by_path[store.image_paths([1])[1]]
    assert (first.label, first.validated_by, first.sample, first.depth) == (
        "dark",
        "anna",
        "S1_10cm",
        10.0,
    )
    predicted = by_path[store.image_paths([5])[5]]
    assert (predicted.label, predicted.validated_by, predicted.classifier) == ("dark", None, "m1")
    assert predicted.predicted and not first.predicted  # ParticleTrieur's auto tag
    assert {t.code: t.group for t in taxa}["dark"] == "benthic"

    fresh = LabelStore(tmp_path / "fresh")
    assert export.import_particletrieur(fresh, xml_path) == 12
    assert fresh.status_counts() == {"validated": 4, "predicted": 1, "unlabelled": 7}
    assert {c["name"]: (c["validated"], c["group"]) for c in fresh.classes()}["dark"] == (
        2,
        "benthic",
    )


def test_ecotaxa_zip_names_the_validator_and_no_one_for_a_prediction(
    store: LabelStore, tmp_path: Path
):
    store.set_labels([1], "Globigerina bulloïdes", user="Zoë Müller")
    store.set_predictions([(2, "dark", 0.9, 0.8)], model="run")
    archive = export.export_ecotaxa(store, tmp_path / "eco.zip")
    with zipfile.ZipFile(archive) as z:
        (tsv_name,) = [n for n in z.namelist() if n.endswith(".tsv")]
        text = z.read(tsv_name).decode("utf-8-sig")
        images = set(z.namelist())
    header, _, *rows = [line.split("\t") for line in text.splitlines()]
    table = {
        row[header.index("object_annotation_category")]: dict(zip(header, row)) for row in rows
    }
    validated, predicted = table["Globigerina bulloïdes"], table["dark"]
    assert validated["object_annotation_person_name"] == "Zoë Müller"
    assert validated["sample_id"] == "S1_10cm"
    assert (predicted["object_annotation_status"], predicted["object_annotation_person_name"]) == (
        "predicted",
        "",
    )
    assert predicted["object_prediction_model"] == "run"
    assert {validated["img_file_name"], predicted["img_file_name"]} <= images


def test_a_link_out_of_the_image_root_is_not_exported(
    store: LabelStore, image_root: Path, tmp_path: Path
):
    """A registered image replaced by a link to a file outside its root: refused, as the
    /files route refuses it, and nothing is written."""
    import pytest

    from foramflow.errors import ForamflowError

    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for the training set")
    registered = image_root / "S1_10cm" / "p00.png"
    registered.unlink()
    registered.symlink_to(secret)
    store.set_labels([1, 3], "dark", user="anna")
    with pytest.raises(ForamflowError, match=r"p00\.png: leads out of its image root"):
        export.export_training_set(store, tmp_path / "train")
    assert not list((tmp_path / "train").rglob("*.png"))


def test_a_link_inside_the_image_root_is_exported(
    store: LabelStore, image_root: Path, tmp_path: Path
):
    registered = image_root / "S1_10cm" / "p00.png"
    registered.unlink()
    registered.symlink_to(image_root / "S1_10cm" / "p02.png")
    store.set_labels([1], "dark", user="anna")
    export.export_training_set(store, tmp_path / "train")
    copied = tmp_path / "train" / "dark" / "S1_10cm__p00.png"
    assert copied.read_bytes() == (image_root / "S1_10cm" / "p02.png").read_bytes()
