"""A training set's class folders follow the one class-name rule: a folder that cannot name
a class is left out and reported, two folders of one class are refused."""

import unicodedata

import numpy as np
import pytest
from PIL import Image

from foramflow.data.dataset import ImageSetError, list_folder, load_image_set


def grey(path, level=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), level, np.uint8)).save(path)


@pytest.mark.parametrize(
    ("folder", "reason"),
    [
        ("CON", "Windows reserves CON"),
        ("aux.txt", "Windows reserves AUX"),
        ("Unsure", "reserved"),
        ("unlabeled", "reserved"),
        ("Orbulina\u202e", "U+202E"),
        ("Orbu\u200blina", "U+200B"),
        ("Orbu\x85lina", "U+0085"),
        ("Globigerina.", "ends with a dot"),
        ("Globigerina ", "ends with a space"),
    ],
)
def test_a_folder_that_cannot_name_a_class_is_left_out_and_reported(tmp_path, folder, reason):
    grey(tmp_path / "set" / "Orbulina" / "a.png")
    grey(tmp_path / "set" / folder / "b.png")
    items, skipped = list_folder(tmp_path / "set")
    assert [label for _, label in items] == ["Orbulina"]
    (entry, why), *_ = skipped.items()
    assert entry == tmp_path / "set" / folder
    assert reason in why and "left out" in why


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Globigerina", "globigerina"),
        ("Globigerina", "GLOBIGERINA"),
        (unicodedata.normalize("NFC", "Orbulina é"), unicodedata.normalize("NFD", "Orbulina é")),
    ],
)
def test_two_folders_of_one_class_are_refused(tmp_path, first, second):
    grey(tmp_path / "set" / first / "a.png")
    grey(tmp_path / "set" / second / "b.png")
    with pytest.raises(ImageSetError, match="are the same class"):
        load_image_set(tmp_path / "set", min_per_class=1)


def test_class_names_come_in_canonical_form(tmp_path):
    nfd = unicodedata.normalize("NFD", "Orbulina é")
    grey(tmp_path / "set" / nfd / "a.png")
    grey(tmp_path / "set" / "Globigerina" / "b.png")
    image_set = load_image_set(tmp_path / "set", min_per_class=1)
    assert image_set.classes == ["Globigerina", unicodedata.normalize("NFC", nfd)]


def test_a_particletrieur_training_set_with_look_alike_classes_is_refused(tmp_path):
    images = ""
    for i, code in enumerate(["Globigerina", "globigerina"]):
        grey(tmp_path / f"{i}.png")
        images += (
            f"<image><source><filename>{i}.png</filename></source><classifications>"
            f"<classification><code>{code}</code><value>1</value></classification>"
            "</classifications></image>"
        )
    (tmp_path / "p.xml").write_text(f"<project><images>{images}</images></project>")
    with pytest.raises(ImageSetError, match=r"p\.xml: .*are the same class"):
        load_image_set(tmp_path / "p.xml", min_per_class=1)
