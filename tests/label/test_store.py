"""The SQLite label store: registering images, labels, history and undo, classes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from foramflow.label.store import ImageFilter, LabelStore, PathRefused


def test_add_images_takes_sample_and_depth_from_folder_names(store: LabelStore):
    assert store.count() == 12
    assert store.samples() == ["S1_10cm", "S2_20cm"]
    rows = store.page(ImageFilter(sample="S2_20cm"))
    assert len(rows) == 6
    assert {row["depth_cm"] for row in rows} == {20.0}
    assert store.status_counts() == {"unlabelled": 12, "predicted": 0, "validated": 0}


def test_crops_in_slide_subfolders_belong_to_their_sample_folder(tmp_path: Path, make_image):
    for relpath in ("S3_30cm/slide_a/crop_1.png", "S3_30cm/slide_b/crop_1.png", "loose.png"):
        make_image(tmp_path / "crops" / relpath, np.full((12, 12), 0.4))
    store = LabelStore(tmp_path / "p")
    added, problems = store.add_images(tmp_path / "crops")
    assert (added, problems) == (3, [])
    samples = {row["relpath"]: (row["sample"], row["depth_cm"]) for row in store.page(limit=10)}
    assert samples == {
        "S3_30cm/slide_a/crop_1.png": ("S3_30cm", 30.0),
        "S3_30cm/slide_b/crop_1.png": ("S3_30cm", 30.0),
        "loose.png": ("crops", None),
    }


def test_adding_again_adds_nothing_and_files_are_untouched(store: LabelStore, image_root: Path):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in image_root.rglob("*.png")}
    added, problems = store.add_images(image_root)
    assert (added, problems) == (0, [])
    store.set_labels([1, 2], "G_ruber", user="anna")
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in image_root.rglob("*.png")}
    assert after == before


def test_metadata_csv_overrides_depth(tmp_path: Path, image_root: Path):
    csv_path = tmp_path / "depths.csv"
    csv_path.write_text("sample,depth_cm\nS1_10cm,105.5\n")
    store = LabelStore(tmp_path / "p")
    store.add_images(image_root, metadata_csv=csv_path)
    depths = {row["sample"]: row["depth_cm"] for row in store.page(limit=100)}
    assert depths == {"S1_10cm": 105.5, "S2_20cm": 20.0}


def test_symlink_out_of_root_is_skipped(tmp_path: Path, image_root: Path, make_image):
    outside = make_image(tmp_path / "secret" / "x.png", np.zeros((8, 8)))
    os.symlink(outside, image_root / "S1_10cm" / "link.png")
    store = LabelStore(tmp_path / "p")
    added, problems = store.add_images(image_root)
    assert added == 12
    assert len(problems) == 1 and "symbolic link" in problems[0]


def test_resolve_refuses_paths_out_of_the_root(store: LabelStore, image_root: Path, tmp_path):
    (root_id,) = store.roots
    assert store.resolve(root_id, "S1_10cm/p00.png") == (image_root / "S1_10cm/p00.png").resolve()
    for bad in ("../secret.png", "S1_10cm/../../x.png", "/etc/passwd", "", "a\\..\\b"):
        with pytest.raises(PathRefused):
            store.resolve(root_id, bad)
    os.symlink(tmp_path, image_root / "escape")
    with pytest.raises(PathRefused, match="out of the image root"):
        store.resolve(root_id, "escape/project/foramflow-labels.sqlite")
    with pytest.raises(PathRefused, match="unknown image root"):
        store.resolve(99, "S1_10cm/p00.png")


def test_labels_counts_history_and_undo(store: LabelStore):
    store.set_labels([1, 2, 3], "G_ruber", user="anna")
    store.set_labels([3], "B_spissa", user="ben")
    counts = {c["name"]: c["validated"] for c in store.classes()}
    assert counts == {"G_ruber": 2, "B_spissa": 1}
    assert all(c["below_target"] for c in store.classes())

    history = store.history(3)
    assert [(h["user"], h["old_label"], h["new_label"]) for h in history] == [
        ("anna", None, "G_ruber"),
        ("ben", "G_ruber", "B_spissa"),
    ]
    # Undo is per user: anna's undo leaves ben's change alone.
    assert sorted(store.undo(user="anna")) == [1, 2, 3]
    rows = {row["id"]: row for row in store.rows([1, 2, 3])}
    assert rows[1]["status"] == "unlabelled"
    assert rows[3]["label"] is None  # anna's batch restored image 3 to before her change
    assert store.undo(user="anna") == []
    assert store.undo(user="ben") == [3]
    assert store.rows([3])[0]["label"] == "G_ruber"
    assert store.rows([3])[0]["validated_by"] == "anna"


def test_accept_predictions_above_a_score(store: LabelStore):
    store.set_predictions(
        [(1, "G_ruber", 0.99, 0.98), (2, "G_ruber", 0.90, 0.8), (3, "B_spissa", 0.97, 0.9)],
        model="m1",
    )
    assert store.count(ImageFilter(status="predicted")) == 3
    assert store.count(ImageFilter(label="G_ruber", min_score=0.95)) == 1
    assert store.accept_predictions(label="G_ruber", min_score=0.95, user="anna") == 1
    assert store.rows([1])[0]["status"] == "validated"
    assert store.rows([2])[0]["status"] == "predicted"
    assert store.undo() == [1]


def test_rename_and_merge_classes(store: LabelStore):
    store.set_labels([1, 2], "G_rubber", user="anna")
    store.set_labels([3], "G_ruber_white", user="anna")
    store.rename_class("G_rubber", "G_ruber")
    store.set_group("G_ruber", "planktonic")
    store.merge_classes(["G_ruber_white"], "G_ruber", user="anna")
    assert [(c["name"], c["group"], c["validated"]) for c in store.classes()] == [
        ("G_ruber", "planktonic", 3)
    ]
    assert store.history(1)[0]["new_label"] == "G_ruber"  # history follows the rename
    store.create_class("B_spissa")
    with pytest.raises(ValueError, match="exists already"):
        store.rename_class("B_spissa", "G_ruber")
    with pytest.raises(ValueError, match="class name"):
        store.create_class("a/b")
    # The merge is undoable: image 3 gets its old class back, and the class reappears.
    assert store.undo() == [3]
    assert {c["name"] for c in store.classes()} >= {"G_ruber_white"}


def test_concurrent_writers_lose_nothing(tmp_path: Path, image_root: Path):
    """Two store objects (two connections each thread) label disjoint images at once."""
    project = tmp_path / "shared"
    LabelStore(project).add_images(image_root)
    errors = []

    def writer(ids, label):
        store = LabelStore(project)
        try:
            for _ in range(20):
                for image_id in ids:
                    store.set_labels([image_id], label, user=label)
        except Exception as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [
        threading.Thread(target=writer, args=(range(1, 7), "A")),
        threading.Thread(target=writer, args=(range(7, 13), "B")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = LabelStore(project)
    labels = {row["id"]: row["label"] for row in store.page(limit=100)}
    assert labels == {i: "A" if i <= 6 else "B" for i in range(1, 13)}
    assert store.query("SELECT count(*) FROM history")[0][0] == 240
