"""The one rule for class names, wherever a name enters: labelling, imports, training, bundles.

A class name becomes a folder of an exported training set, a column of the count tables
and a label of a bundle, on Linux, macOS and Windows alike. So it has one canonical form
(Unicode NFC) and two names are the same class when they agree once normalised and
case-folded: ``Globigerina`` and ``globigerina`` would be one folder on macOS and Windows,
and ``é`` composed or decomposed looks the same to everyone.

Refused, with a message naming the name and why:

* names Windows cannot create or reserves for devices (``CON``, ``nul.txt``, ``COM1`` …,
  any case, with or without an extension), a trailing dot or space, a leading dot,
  the characters ``/ \\ : * ? " < > |``;
* invisible characters and those that reorder text (Unicode categories Cc, Cf, Zl, Zp:
  control characters, zero-width spaces, right-to-left overrides) and lone surrogates;
* the names classification reserves for its own outcomes (``unsure``, ``error``) and
  that labelling projects use for "no class" (``unlabeled``, ``unlabelled``), in any case.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from foramflow.errors import ForamflowError

MAX_CLASS_NAME = 100
#: What an image is called when no class is sure enough: an outcome, never a class.
UNSURE = "unsure"
#: Outcomes and markers that are not classes (compared case-folded).
RESERVED_CLASS_NAMES = frozenset({UNSURE, "unlabeled", "unlabelled", "error"})
FORBIDDEN_CHARACTERS = '/\\:*?"<>|'
# Cc controls (C0, DEL, C1), Cf format characters (bidi overrides, zero-width), line and
# paragraph separators, and surrogates (names that were not valid UTF-8).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_WINDOWS_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|COM[1-9¹²³]|LPT[1-9¹²³]|CONIN\$|CONOUT\$)")


class ClassNameError(ForamflowError, ValueError):
    """A class name that cannot be kept, exported or shared; the message names it."""


def canonical_class_name(name: object, *, allowed: Iterable[str] = ()) -> str:
    """``name`` in its canonical form (NFC) if it can name a class, else
    :class:`ClassNameError`. ``allowed``: reserved names accepted exactly as spelled there
    (a labelling project's own markers)."""
    if not isinstance(name, str):
        raise ClassNameError(f"{name!r}: a class name must be text")
    text = unicodedata.normalize("NFC", name)
    if text in set(allowed):
        return text
    problem = _problem(text)
    if problem:
        raise ClassNameError(f"class name {name!r}: {problem}")
    return text


def class_key(name: str) -> str:
    """What two names of one class share: NFC, case-folded, NFC again."""
    folded = unicodedata.normalize("NFC", name).casefold()
    return unicodedata.normalize("NFC", folded)


def same_class_error(name: str, other: str) -> ClassNameError:
    """Two names of one class; names that print alike are shown with their code points."""
    if unicodedata.normalize("NFC", name) == unicodedata.normalize("NFC", other):
        name, other = ascii(name), ascii(other)
        return ClassNameError(
            f"class names {other} and {name} are the same class (the same text in two "
            "Unicode forms)"
        )
    return ClassNameError(
        f"class names {other!r} and {name!r} are the same class (they differ only in case "
        "or Unicode form, and would be one folder on macOS and Windows)"
    )


def distinct_class_names(names: Iterable[str], *, allowed: Iterable[str] = ()) -> list[str]:
    """``names`` in canonical form; :class:`ClassNameError` for an invalid name or for two
    names of the same class."""
    allowed = tuple(allowed)
    seen: dict[str, str] = {}  # key: the name as given
    result = []
    for name in names:
        text = canonical_class_name(name, allowed=allowed)
        key = class_key(text)
        if key in seen:
            if seen[key] == name:
                raise ClassNameError(f"class name {name!r} is listed twice")
            raise same_class_error(name, seen[key])
        seen[key] = name
        result.append(text)
    return result


def _problem(text: str) -> str | None:
    """Why ``text`` cannot name a class, or None."""
    if not 1 <= len(text) <= MAX_CLASS_NAME:
        return f"a class name is 1-{MAX_CLASS_NAME} characters"
    for char in text:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            return (
                f"holds the invisible or control character U+{ord(char):04X} "
                f"({unicodedata.name(char, 'unnamed')})"
            )
    bad = sorted({char for char in text if char in FORBIDDEN_CHARACTERS})
    if bad:
        return (
            f"holds {' '.join(bad)} (a class name holds none of {' '.join(FORBIDDEN_CHARACTERS)})"
        )
    if text.startswith("."):
        return 'starts with "." (a hidden folder)'
    if text[-1] in ". " or text[0] == " ":
        return "starts or ends with a space, or ends with a dot (Windows drops them)"
    if class_key(text) in RESERVED_CLASS_NAMES:
        reserved = ", ".join(sorted(RESERVED_CLASS_NAMES))
        return f"reserved (in any case: {reserved}); these are not classes"
    stem = text.split(".")[0].rstrip(" ")
    if _WINDOWS_DEVICE.fullmatch(stem.upper()):
        return f"Windows reserves {stem.upper()} for a device, with or without an extension"
    return None
