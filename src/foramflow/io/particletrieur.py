"""Read and write ParticleTrieur project files, so labels move freely between the two tools.

A ParticleTrieur project is one XML file::

    <project version="…">
      <taxons><taxon><code/><name/><description/><group/><isClass/></taxon>…</taxons>
      <tags><tag><code/><name/><description/></tag>…</tags>
      <images>
        <image>
          <source><filename/><width/><height/><sampleID/><index1/><index2/><GUID/>
                  <resolution/></source>
          <val_by/>
          <classifications id="CLASSIFIER"><classification><code/><value/></classification>…
          </classifications>
          <tags><tag/>…</tags>
          <parameters><item key="…">…</item>…</parameters>
        </image>…
      </images>
    </project>

Filenames are stored relative to the project file. ``index1`` holds the sample depth and
``resolution`` is in pixels per millimetre; ParticleTrieur writes 0 for either when it is
unknown, so 0 reads as unknown (a depth of 0 is also kept as the parameter ``index1``, which
ParticleTrieur itself reads as the depth when it imports metadata). The class of an image is
its highest-valued classification; the reserved code ``unlabeled`` means no class (``None``
here) and ``unsure`` means the classifier's best score fell below its threshold.

ParticleTrieur tags what a network classified with ``auto`` and removes the tag when a person
labels the image; ``val_by`` is set only when someone ticks "validated" (or labels with
auto-validation on). So an image tagged ``auto`` holds a prediction and any other
classification is a person's label, whether ``val_by`` is set or not.

Parsing goes through defusedxml, so a hostile file cannot expand entities or reach the network.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import parse as _safe_parse

from foramflow.errors import ForamflowError
from foramflow.io.class_names import UNSURE
from foramflow.io.files import atomic_write
from foramflow.io.limits import MAX_TABLE_BYTES, FileRefused, check_size

UNLABELED = "unlabeled"
RESERVED_LABELS = (UNLABELED, UNSURE)
AUTO = "auto"  # ParticleTrieur's tag of an image a network classified
_INDEX1 = "index1"  # also a parameter: ParticleTrieur takes it as the depth on import
_FORAMFLOW = "foramflow 2"  # the project version foramflow writes
_OLD_FORAMFLOW = "foramflow"  # written before predictions were tagged auto

# Tags ParticleTrieur expects in every project.
_REQUIRED_TAGS = {
    "duplicate": ("Duplicate", "The image is a duplicate of another in the set."),
    "auto": ("Automatically classified", "The image was automatically classified."),
}
_RESERVED_TAXA = {
    UNLABELED: ("Not classified", "The default state for all unclassified images."),
    UNSURE: (
        "Class is unsure",
        "None of the classes identified by the CNN are above the threshold",
    ),
}


class ProjectError(ForamflowError, ValueError):
    """A ParticleTrieur project file that cannot be read; the message names it."""


@dataclass
class Taxon:
    """A class (``is_class``) or a reserved/grouping label of a ParticleTrieur project."""

    code: str
    name: str = ""
    description: str = ""
    group: str = ""
    is_class: bool = True


@dataclass
class ParticleRecord:
    """One image of a project.

    ``label`` is the highest-valued classification, ``None`` when unlabelled: a person's
    label, or a prediction when :attr:`predicted` (the ``auto`` tag). ``depth`` is
    ParticleTrieur's ``index1``; ``resolution`` is in pixels per millimetre.
    ``classifications`` keeps every score the classifier ``classifier`` gave.
    """

    path: Path
    label: str | None = None
    sample: str | None = None
    depth: float | None = None
    guid: str | None = None
    resolution: float | None = None
    validated_by: str | None = None
    classifier: str | None = None
    classifications: dict[str, float] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    index2: float | None = None
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def predicted(self) -> bool:
        """True when a network gave the classification (ParticleTrieur's ``auto`` tag)."""
        return AUTO in self.tags


def read_project(xml_path: str | Path) -> tuple[list[ParticleRecord], list[Taxon]]:
    """Read a ParticleTrieur project: its images (absolute paths) and its taxa, in file order.

    Raises :class:`ProjectError` naming the file for malformed XML or a malformed value.
    """
    xml_path = Path(xml_path)
    try:
        check_size(xml_path, xml_path.stat().st_size, MAX_TABLE_BYTES, "project file")
        root = _safe_parse(xml_path).getroot()
    except FileRefused as err:
        raise ProjectError(str(err)) from None
    except (ET.ParseError, DefusedXmlException) as err:
        raise ProjectError(f"{xml_path}: not a valid ParticleTrieur project ({err})") from err
    except OSError as err:
        raise ProjectError(f"{xml_path}: cannot read file ({err.strerror or err})") from err
    if root.tag != "project":
        raise ProjectError(f"{xml_path}: root element is <{root.tag}>, expected <project>")
    taxa = [_read_taxon(node) for node in root.iterfind("taxons/taxon")]
    base = xml_path.resolve().parent
    records = []
    for number, node in enumerate(root.iterfind("images/image"), start=1):
        try:
            records.append(_read_image(node, base))
        except ValueError as err:
            raise ProjectError(f"{xml_path}: image {number}: {err}") from err
    if root.get("version") == _OLD_FORAMFLOW:
        _tag_old_predictions(records)
    return records, taxa


def _tag_old_predictions(records: list[ParticleRecord]) -> None:
    """Files foramflow wrote before it tagged predictions ``auto`` gave a validator to each
    validated image and none to a prediction: tag those predictions now."""
    for record in records:
        if record.label is not None and not record.validated_by and not record.predicted:
            record.tags.append(AUTO)


def write_project(xml_path: str | Path, records: list[ParticleRecord], taxa: list[Taxon]) -> None:
    """Write a ParticleTrieur project; filenames are made relative to the project file.

    The reserved labels and tags ParticleTrieur expects are added when missing, as is a
    taxon for every label used by a record. The file is replaced atomically.
    """
    xml_path = Path(xml_path)
    base = xml_path.resolve().parent
    root = ET.Element("project", version=_FORAMFLOW)
    _write_taxa(ET.SubElement(root, "taxons"), records, taxa)
    _write_tags(ET.SubElement(root, "tags"), records)
    images = ET.SubElement(root, "images")
    for record in records:
        _write_image(ET.SubElement(images, "image"), record, base)
    ET.indent(root)
    tree = ET.ElementTree(root)
    atomic_write(xml_path, lambda tmp: tree.write(tmp, encoding="UTF-8", xml_declaration=True))


# -- reading ------------------------------------------------------------------------------


def _text(node: ET.Element, path: str) -> str | None:
    """Text of a child element (or attribute of the same name); None when absent or blank."""
    child = node.find(path)
    value = child.text if child is not None else node.get(path)
    value = value.strip() if value else None
    return value or None


def _number(node: ET.Element, path: str, kind=float):
    value = _text(node, path)
    if value is None:
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except ValueError:
        raise ValueError(f"<{path}> is not a number: {value!r}") from None  # → ProjectError


def _read_taxon(node: ET.Element) -> Taxon:
    is_class = _text(node, "isClass")
    return Taxon(
        code=_text(node, "code") or "",
        name=_text(node, "name") or "",
        description=_text(node, "description") or "",
        group=_text(node, "group") or "",
        is_class=is_class is None or is_class.lower() == "true",
    )


def _read_image(node: ET.Element, base: Path) -> ParticleRecord:
    source = node.find("source")
    if source is None or _text(source, "filename") is None:
        raise ValueError("<source><filename> is missing")  # → ProjectError naming the file
    filename = _text(source, "filename")
    path = Path(filename) if _is_absolute(filename) else base / filename.replace("\\", "/")
    classifications_node = node.find("classifications")
    classifications: dict[str, float] = {}
    classifier = None
    if classifications_node is not None:
        classifier = classifications_node.get("id") or None
        for item in classifications_node.iterfind("classification"):
            code = _text(item, "code")
            if code is not None:
                classifications[code] = _number(item, "value") or 0.0
    best = max(classifications, key=classifications.__getitem__) if classifications else None
    classifications.pop(UNLABELED, None)
    sample = _text(source, "sampleID")
    parameters = {
        item.get("key"): (item.text or "")
        for item in node.iterfind("parameters/item")
        if item.get("key")
    }
    depth = _depth(_number(source, "index1"), parameters)
    return ParticleRecord(
        path=Path(os.path.normpath(path)),
        label=None if best in (None, UNLABELED) else best,
        sample=None if sample in (None, "unknown") else sample,
        depth=depth,
        guid=_text(source, "GUID"),
        resolution=_positive_or_none(_number(source, "resolution")),
        validated_by=_text(node, "val_by"),
        classifier=classifier,
        classifications=classifications,
        width=_number(source, "width", int),
        height=_number(source, "height", int),
        index2=_number(source, "index2"),
        tags=[t.text.strip() for t in node.iterfind("tags/tag") if t.text and t.text.strip()],
        parameters=parameters,
    )


def _depth(index1: float | None, parameters: dict[str, str]) -> float | None:
    """``index1``, but 0 (ParticleTrieur's unknown) only when a parameter ``index1`` says 0,
    which is then taken out of ``parameters`` (the writer puts it back)."""
    if index1 is None or index1 != 0:
        return index1
    try:
        known = float(parameters.get(_INDEX1, "nan")) == 0
    except ValueError:
        known = False
    if known:
        del parameters[_INDEX1]
    return 0.0 if known else None


def _positive_or_none(value: float | None) -> float | None:
    """ParticleTrieur writes 0 for an unknown resolution."""
    return value if value is not None and value > 0 else None


def _is_absolute(filename: str) -> bool:
    """Absolute on POSIX, or a Windows drive / network path written by ParticleTrieur."""
    return filename.startswith(("/", "\\\\")) or (
        len(filename) > 2 and filename[1] == ":" and filename[2] in "/\\"
    )


# -- writing ------------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, value) -> ET.Element:
    node = ET.SubElement(parent, tag)
    if value is not None:
        node.text = _format(value)
    return node


def _format(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "0.0"
    return str(value)


def _write_taxa(parent: ET.Element, records: list[ParticleRecord], taxa: list[Taxon]) -> None:
    by_code = {taxon.code: taxon for taxon in taxa}
    for code, (name, description) in _RESERVED_TAXA.items():
        by_code.setdefault(code, Taxon(code, name, description, "archive/other", False))
    for record in records:
        for code in [record.label, *record.classifications]:
            if code is not None and code not in by_code:
                by_code[code] = Taxon(code)
    for taxon in by_code.values():
        node = ET.SubElement(parent, "taxon")
        for tag, value in (
            ("code", taxon.code),
            ("name", taxon.name),
            ("description", taxon.description),
            ("group", taxon.group),
            ("isClass", taxon.is_class),
        ):
            _sub(node, tag, value)


def _write_tags(parent: ET.Element, records: list[ParticleRecord]) -> None:
    codes = dict.fromkeys(_REQUIRED_TAGS)
    for record in records:
        codes.update(dict.fromkeys(record.tags))
    for code in codes:
        name, description = _REQUIRED_TAGS.get(code, ("", ""))
        node = ET.SubElement(parent, "tag")
        _sub(node, "code", code)
        _sub(node, "name", name)
        _sub(node, "description", description)


def _relative_filename(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).absolute(), base)).as_posix()
    except ValueError:  # another drive on Windows: keep it absolute, as ParticleTrieur does
        return str(path)


def _classifications_to_write(record: ParticleRecord) -> dict[str, float]:
    """The stored scores when their best agrees with the label, else the label alone at 1."""
    if record.label is None:
        return {UNLABELED: 1.0}
    scores = record.classifications
    if scores and max(scores, key=scores.__getitem__) == record.label:
        return scores
    return {record.label: 1.0}


def _write_image(node: ET.Element, record: ParticleRecord, base: Path) -> None:
    source = ET.SubElement(node, "source")
    _sub(source, "filename", _relative_filename(record.path, base))
    _sub(source, "sampleID", record.sample or "unknown")
    # Unknown numbers are left out: ParticleTrieur reads a missing element as 0.
    for tag, value in (
        ("width", record.width),
        ("height", record.height),
        ("index1", record.depth),
        ("index2", record.index2),
        ("resolution", record.resolution),
    ):
        if value is not None:
            _sub(source, tag, value if tag in ("width", "height") else float(value))
    if record.guid:
        _sub(source, "GUID", record.guid)
    _sub(node, "val_by", record.validated_by or "")
    classifications = ET.SubElement(node, "classifications")
    classifications.set("id", record.classifier or "")
    for code, value in _classifications_to_write(record).items():
        item = ET.SubElement(classifications, "classification")
        _sub(item, "code", code)
        _sub(item, "value", float(value))
    tags = ET.SubElement(node, "tags")
    for tag in record.tags:
        _sub(tags, "tag", tag)
    parameters = ET.SubElement(node, "parameters")
    known_zero = {_INDEX1: "0.0"} if record.depth == 0 else {}
    for key, value in {**record.parameters, **known_zero}.items():
        _sub(parameters, "item", value).set("key", key)
