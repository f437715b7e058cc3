"""The one rule for class names: each forbidden name refused with the reason, each pair of
look-alikes one class."""

import unicodedata

import pytest

from foramflow.errors import ForamflowError
from foramflow.io.class_names import (
    ClassNameError,
    canonical_class_name,
    class_key,
    distinct_class_names,
)

NFC_E = unicodedata.normalize("NFC", "Orbulina é")
NFD_E = unicodedata.normalize("NFD", "Orbulina é")

LOOK_ALIKES = [
    ("Globigerina", "globigerina"),
    ("Globigerina", "GLOBIGERINA"),
    (NFC_E, NFD_E),
    ("Straße", "STRASSE"),  # case folding, not just lower-casing
]

FORBIDDEN = {
    # Windows device names, any case, with or without an extension
    "CON": "Windows reserves CON",
    "nul": "Windows reserves NUL",
    "aux.txt": "Windows reserves AUX",
    "Com1": "Windows reserves COM1",
    "lpt9.tar.gz": "Windows reserves LPT9",
    "PRN .txt": "Windows reserves PRN",
    # what Windows drops or cannot create
    "Globigerina.": "ends with a dot",
    "Globigerina ": "ends with a space",
    " Globigerina": "starts or ends with a space",
    ".hidden": 'starts with "."',
    "a/b": "holds /",
    "a:b": "holds :",
    # names that are not classes, in any case
    "unsure": "reserved",
    "Unsure": "reserved",
    "UNLABELED": "reserved",
    "Unlabelled": "reserved",
    "Error": "reserved",
    # invisible characters and those that reorder text
    "Orbulina\u202eanilubrO": "U+202E (RIGHT-TO-LEFT OVERRIDE)",
    "Orbulina\u202d": "U+202D (LEFT-TO-RIGHT OVERRIDE)",
    "Orbu\u200blina": "U+200B (ZERO WIDTH SPACE)",
    "Orbu\u200dlina": "U+200D (ZERO WIDTH JOINER)",
    "Orbu\u0085lina": "U+0085",  # C1 control (next line)
    "Orbu\u009blina": "U+009B",  # C1 control (CSI)
    "Orbu\x07lina": "U+0007",
    "Orbu\u2028lina": "U+2028 (LINE SEPARATOR)",
    "Orbu\u2029lina": "U+2029 (PARAGRAPH SEPARATOR)",
    "Orbu\udcfflina": "U+DCFF",  # a byte that was not UTF-8
    "": "1-100 characters",
    "x" * 101: "1-100 characters",
}


@pytest.mark.parametrize(("name", "reason"), FORBIDDEN.items())
def test_a_forbidden_name_is_refused_naming_it_and_why(name, reason):
    with pytest.raises(ClassNameError) as caught:
        canonical_class_name(name)
    message = str(caught.value)
    assert repr(name)[:40] in message
    assert reason in message
    assert isinstance(caught.value, ForamflowError)
    assert "\n" not in message


@pytest.mark.parametrize(
    "name", ["Globigerina bulloides", "G. ruber (pink)", "Orbulina é", "CONE", "console", "Com10"]
)
def test_ordinary_names_pass_unchanged(name):
    assert canonical_class_name(name) == name


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
def test_look_alikes_are_one_class(first, second):
    assert class_key(first) == class_key(second)
    with pytest.raises(ClassNameError, match="are the same class"):
        distinct_class_names([first, second])


def test_the_canonical_form_is_nfc():
    assert canonical_class_name(NFD_E) == NFC_E
    assert distinct_class_names([NFD_E, "Globigerina"]) == [NFC_E, "Globigerina"]


def test_a_name_listed_twice_is_refused():
    with pytest.raises(ClassNameError, match="'a' is listed twice"):
        distinct_class_names(["a", "b", "a"])


def test_reserved_markers_pass_only_as_allowed_and_spelled():
    assert canonical_class_name("unsure", allowed=("unsure",)) == "unsure"
    with pytest.raises(ClassNameError, match="reserved"):
        canonical_class_name("Unsure", allowed=("unsure",))
