"""``network_info.xml``: the bundle described as MISO 3.1.25 describes its networks.

ParticleTrieur opens a network from this file (``<protobuf>`` names the ONNX file, ``<inputs>``
its input size and channels, ``<labels>`` the classes in output order), and so do MISO's
readers (``ModelInfo.from_xml``, ``load_onnx_from_xml``). Each field follows MISO's own
files: the date as ``%Y-%m-%d_%H%M%S``, the image type in the text of ``<params><cnn>`` (a
Python dict, where MISO looks for ``'greyscale'``), preprocessing ``rescale`` 255, 0, 1 (values
in [0, 1]), training times in seconds, the inference time per image in milliseconds. The
network it names is model.nhwc.onnx (:mod:`foramflow.bundle.nhwc`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from foramflow.bundle.schema import (
    INPUT_NAME,
    META_FILE,
    NETWORK_INFO_FILE,
    NHWC_FILE,
    OUTPUT_NAME,
    TrainingInfo,
)
from foramflow.imaging.preprocess import PREPROCESS_NAME

if TYPE_CHECKING:
    from foramflow.bundle.schema import BundleMeta

NETWORK_INFO_VERSION = "2.1"
MISO_DATE_FORMAT = "%Y-%m-%d_%H%M%S"
_CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # model.json's ``created``
# MISO's preprocessing record: divide by 255, giving values from 0 to 1.
MISO_PREPRO = ("rescale", (255, 0, 1))


def _add(parent: ET.Element, tag: str, text=None, **attrib) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: str(v) for k, v in attrib.items()})
    if text is not None:
        element.text = f"{text:.6g}" if isinstance(text, float) else str(text)
    return element


def network_info_xml(meta: BundleMeta, protobuf: str = NHWC_FILE) -> str:
    """Render the XML from a bundle's description; ``protobuf``: the network file it names."""
    root = ET.Element("network", version=NETWORK_INFO_VERSION)
    model_type = meta.model.name if meta.model else ""
    _add(root, "name", meta.name or "")
    _add(root, "description", meta.description or _description(meta, model_type))
    _add(root, "type", model_type)
    _add(root, "date", miso_date(meta.created))
    _add(root, "protobuf", protobuf)
    _add_params(root, meta, model_type)
    _add_tensors(root, meta)
    training_set = meta.training_set
    _add(root, "source_data", (training_set and training_set.source) or "")
    _add(root, "source_size", (training_set and training_set.n_images) or 0)
    _add_labels(root, meta)
    prepro = _add(root, "prepro")
    _add(prepro, "name", MISO_PREPRO[0])
    prepro_params = _add(prepro, "params")
    for value in MISO_PREPRO[1]:
        _add(prepro_params, "param", value)
    metrics = meta.metrics or {}
    for tag, key in (
        ("accuracy", "accuracy"),
        ("precision", "macro_precision"),
        ("recall", "macro_recall"),
        ("f1score", "macro_f1"),
    ):
        _add(root, tag, float(metrics.get(key, 0.0)))
    _add_load(root, meta)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def miso_date(created: str | None) -> str:
    """model.json's creation time as MISO writes and parses dates; now where it has none."""
    for parse in (lambda text: datetime.strptime(text, _CREATED_FORMAT), datetime.fromisoformat):
        try:
            return parse(created).strftime(MISO_DATE_FORMAT)
        except (TypeError, ValueError):
            continue
    when = datetime.now(timezone.utc)
    return when.strftime(MISO_DATE_FORMAT)


def _image_type(channels: int) -> str:
    return "greyscale" if channels == 1 else "rgb"


def _description(meta: BundleMeta, model_type: str) -> str:
    size, channels = meta.input_size, meta.channels
    training_set = meta.training_set
    source = f" on {training_set.source}" if training_set and training_set.source else ""
    return (
        f"{model_type or 'network'} trained with foramflow{source} ({len(meta.labels)} classes). "
        f"Input: {_image_type(channels)} values from 0 to 1, padded to a square with the median "
        f"of the edge pixels and resized to {size} × {size} ({PREPROCESS_NAME})."
    )


def _add_params(root: ET.Element, meta: BundleMeta, model_type: str) -> None:
    """MISO keeps its network parameters as the text of ``<cnn>``: a Python dict."""
    size, channels = meta.input_size, meta.channels
    cnn = {"id": model_type, "img_shape": [size, size, channels], "img_type": _image_type(channels)}
    filters = meta.model.params.get("filters") if meta.model else None
    if filters is not None:
        cnn["filters"] = filters
    params = _add(root, "params")
    _add(params, "name", meta.name or "")
    _add(params, "cnn", repr(cnn))


def _add_tensors(root: ET.Element, meta: BundleMeta) -> None:
    size, channels = meta.input_size, meta.channels
    input_name = (meta.input and meta.input.name) or INPUT_NAME
    output_name = (meta.output and meta.output.name) or OUTPUT_NAME
    node = _add(_add(root, "inputs"), "input")
    _add(node, "name", "image")
    _add(node, "operation", input_name)
    _add(node, "height", size)
    _add(node, "width", size)
    _add(node, "channels", channels)
    node = _add(_add(root, "outputs"), "output")
    _add(node, "name", "pred")
    _add(node, "operation", output_name)
    _add(node, "height", len(meta.labels))
    _add(node, "width", 0)
    _add(node, "channels", 0)


def _add_labels(root: ET.Element, meta: BundleMeta) -> None:
    counts = (meta.training_set and meta.training_set.counts) or {}
    per_class = (meta.metrics or {}).get("per_class", {})
    labels = _add(root, "labels")
    for name in meta.labels:
        label = _add(labels, "label")
        _add(label, "code", name)
        _add(label, "count", counts.get(name, 0))
        stats = per_class.get(name, {})
        for tag, key in (("precision", "precision"), ("recall", "recall"), ("f1score", "f1")):
            _add(label, tag, float(stats.get(key, 0.0)))
        _add(label, "support", stats.get("support", 0))


def _add_load(root: ET.Element, meta: BundleMeta) -> None:
    training = meta.training or TrainingInfo()
    load = _add(root, "load")
    _add(load, "training_epochs", training.epochs or 0)
    _add(load, "training_time", float(training.time_s or 0.0), unit="s")
    split = training.val_fraction
    _add(load, "training_split", float(0.2 if split is None else split))
    per_image = (training.time_per_image_ms or 0.0) / 1000
    _add(load, "training_time_per_image", float(per_image), unit="s")
    inference = meta.inference_ms_per_image or 0.0
    _add(load, "inference_time_per_image", float(inference), unit="ms")


# Where a MISO training run keeps its networks, each folder with its network_info.xml.
MISO_MODEL_FOLDERS = ("model_onnx", "model_tf2")


def foreign_network(path: Path) -> str | None:
    """What ``path`` is, where it is a MISO or ParticleTrieur network rather than a foramflow
    bundle (a network_info.xml, a folder holding one, or a MISO training run's folder); the
    line says that foramflow cannot run it and what to do instead."""
    if path.is_file() and path.name == NETWORK_INFO_FILE:
        xml = path
    elif path.is_dir() and not (path / META_FILE).exists():
        places = [path, *(path / name for name in MISO_MODEL_FOLDERS)]
        found = [p / NETWORK_INFO_FILE for p in places if (p / NETWORK_INFO_FILE).is_file()]
        xml = found[0] if found else None
    else:
        xml = None
    if xml is None or (xml.parent / META_FILE).exists():
        return None
    return (
        f"{path}: a MISO or ParticleTrieur network ({_summary(xml)}), not a foramflow "
        f"bundle: foramflow cannot run it; train one on the same labels instead, e.g. "
        f"foramflow train project.xml (a ParticleTrieur project) or foramflow train images/ "
        f"(a folder per class)"
    )


def _summary(xml: Path) -> str:
    """Name, type and classes from a network_info.xml, as far as it can be read."""
    import defusedxml.ElementTree as SafeET

    try:
        root = SafeET.parse(xml).getroot()
    except (ET.ParseError, OSError, ValueError):
        return f"{xml.name} unreadable"
    parts = [f"'{root.findtext('name')}'" if root.findtext("name") else None]
    parts.append(root.findtext("type") or None)
    n_labels = len(root.findall("labels/label"))
    parts.append(f"{n_labels} classes" if n_labels else None)
    parts.append(f"protobuf {root.findtext('protobuf')}" if root.findtext("protobuf") else None)
    return ", ".join(p for p in parts if p)
