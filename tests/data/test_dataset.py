import numpy as np
import pytest
from PIL import Image

from foramflow.data.dataset import image_set_hash, load_image_set
from foramflow.io.images import ImageReadError, printable_path
from foramflow.io.particletrieur import ParticleRecord, write_project


def _write(root, counts):
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((4, 4), i, np.uint8)).save(root / name / f"{i}.png")


def test_folder_per_class_drops_rare_classes_and_ignores_hidden(tmp_path):
    _write(tmp_path, {"a": 5, "b": 3, "c": 1, ".hidden": 9})
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".thumb.png").write_bytes(b"")
    image_set = load_image_set(tmp_path, min_per_class=3)
    assert image_set.classes == ["a", "b"]
    assert image_set.dropped == {"c": 1}
    assert list(image_set.counts()) == [5, 3]


def test_too_few_classes_is_a_clear_error(tmp_path):
    _write(tmp_path, {"a": 5, "b": 1})
    with pytest.raises(ValueError, match="min-per-class"):
        load_image_set(tmp_path, min_per_class=3)


def test_hash_changes_with_content_and_label(tmp_path):
    _write(tmp_path, {"a": 3, "b": 3})
    first = image_set_hash(load_image_set(tmp_path, min_per_class=1))
    Image.fromarray(np.full((4, 4), 99, np.uint8)).save(tmp_path / "a" / "0.png")
    assert image_set_hash(load_image_set(tmp_path, min_per_class=1)) != first


def test_particletrieur_project_is_accepted(tmp_path):
    images = tmp_path / "images"
    _write(images, {"x": 3, "y": 3})
    records = [ParticleRecord(path=p, label=p.parent.name) for p in sorted(images.rglob("*.png"))]
    records.append(ParticleRecord(path=records[0].path, label=None))  # unlabeled: skipped
    write_project(tmp_path / "project.xml", records, [])
    image_set = load_image_set(tmp_path / "project.xml", min_per_class=2)
    assert image_set.classes == ["x", "y"]
    assert list(image_set.counts()) == [3, 3]


def test_particletrieur_predictions_are_left_out_unless_asked_for(tmp_path):
    images = tmp_path / "images"
    _write(images, {"x": 3, "y": 3})
    paths = sorted(images.rglob("*.png"))
    records = [ParticleRecord(path=p, label=p.parent.name) for p in paths[:4]]  # x x x y
    records += [ParticleRecord(path=p, label="y", tags=["auto"]) for p in paths[4:]]
    records.append(ParticleRecord(path=paths[0], label="unsure", tags=["auto"]))
    write_project(tmp_path / "project.xml", records, [])

    by_hand = load_image_set(tmp_path / "project.xml", min_per_class=1)
    assert list(by_hand.counts()) == [3, 1]
    assert set(by_hand.paths) == set(paths[:4])
    both = load_image_set(tmp_path / "project.xml", min_per_class=1, include_predictions=True)
    assert list(both.counts()) == [3, 3]


def test_a_project_of_predictions_only_says_so(tmp_path):
    _write(tmp_path / "images", {"x": 2})
    records = [
        ParticleRecord(path=p, label="x", tags=["auto"])
        for p in (tmp_path / "images").rglob("*.png")
    ]
    write_project(tmp_path / "project.xml", records, [])
    with pytest.raises(ValueError, match=r"project\.xml: no labelled images found \(2 predicted"):
        load_image_set(tmp_path / "project.xml", min_per_class=1)


def test_dangling_links_and_link_loops_are_listed_as_skipped(tmp_path):
    _write(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "gone.png").symlink_to("nowhere.png")
    (tmp_path / "b" / "loop1.png").symlink_to("loop2.png")
    (tmp_path / "b" / "loop2.png").symlink_to("loop1.png")
    image_set = load_image_set(tmp_path, min_per_class=1)
    assert list(image_set.counts()) == [3, 3]
    assert image_set.skipped == {
        tmp_path / "a" / "gone.png": "dangling symbolic link (to nowhere.png)",
        tmp_path / "b" / "loop1.png": "symbolic link loop",
        tmp_path / "b" / "loop2.png": "symbolic link loop",
    }


def test_non_utf8_file_name_is_skipped_not_the_set(tmp_path):
    import os

    _write(tmp_path, {"a": 3, "b": 3})
    odd = os.fsencode(tmp_path / "a") + b"/caf\xe9.png"
    with open(odd, "wb") as handle:
        handle.write((tmp_path / "a" / "0.png").read_bytes())
    bad_class = os.fsencode(tmp_path) + b"/\xff"
    os.mkdir(bad_class)
    with open(bad_class + b"/0.png", "wb") as handle:
        handle.write((tmp_path / "a" / "0.png").read_bytes())
    image_set = load_image_set(tmp_path, min_per_class=1)
    assert image_set.classes == ["a", "b"] and list(image_set.counts()) == [3, 3]
    reasons = {printable_path(p): r for p, r in image_set.skipped.items()}
    assert reasons == {
        f"{tmp_path}/a/caf\\xe9.png": "file name is not valid UTF-8",
        f"{tmp_path}/\\xff": "folder name is not valid UTF-8 (its images are left out)",
    }


def test_folder_named_like_an_image_is_not_taken_for_one(tmp_path):
    _write(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "x.jpg").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a" / "x.jpg" / "in.png")
    image_set = load_image_set(tmp_path, min_per_class=1)
    assert tmp_path / "a" / "x.jpg" not in image_set.paths
    assert tmp_path / "a" / "x.jpg" / "in.png" in image_set.paths
    assert list(image_set.counts()) == [4, 3] and image_set.skipped == {}


def test_hash_covers_only_the_images_given(tmp_path):
    _write(tmp_path, {"a": 3, "b": 3})
    image_set = load_image_set(tmp_path, min_per_class=1)
    used = image_set.subset(np.arange(1, 6))
    first = image_set_hash(used)
    image_set.paths[0].write_bytes(b"changed, and not read")
    assert image_set_hash(used) == first


def test_hash_of_a_file_that_cannot_be_read_names_it(tmp_path, monkeypatch):
    from pathlib import Path

    _write(tmp_path, {"a": 3, "b": 3})
    image_set = load_image_set(tmp_path, min_per_class=1)
    locked = image_set.paths[2]
    real = Path.read_bytes

    def read_bytes(path):
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ImageReadError, match=r"a/2\.png: cannot read.*Permission denied"):
        image_set_hash(image_set)
