import numpy as np
import pytest
from PIL import Image

from foramflow.data.dataset import image_set_hash, load_image_set
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
