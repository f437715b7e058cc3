"""``network_info.xml``: the model described in the MISO / ParticleTrieur schema.

Written so that ParticleTrieur (and miso's loader) can use a foramflow model, without the
defects of miso 3.1.25's own files: a ``<params>`` block carries the image type that miso's
loader reads (``params/cnn``); ``training_epochs`` is the number actually run; every time
states its unit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict
from typing import TYPE_CHECKING

from foramflow.bundle.schema import INPUT_NAME, MODEL_FILE, OUTPUT_NAME, TrainingInfo
from foramflow.imaging.preprocess import PREPROCESS_NAME

if TYPE_CHECKING:
    from foramflow.bundle.schema import BundleMeta

NETWORK_INFO_VERSION = "2.1"


def _add(parent: ET.Element, tag: str, text=None, **attrib) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: str(v) for k, v in attrib.items()})
    if text is not None:
        element.text = f"{text:.6g}" if isinstance(text, float) else str(text)
    return element


def network_info_xml(meta: BundleMeta) -> str:
    """Render the XML from a bundle's description."""
    root = ET.Element("network", version=NETWORK_INFO_VERSION)
    model_type = meta.model.name if meta.model else ""
    _add(root, "name", meta.name or "")
    _add(root, "description", meta.description or "")
    _add(root, "type", model_type)
    _add(root, "date", meta.created or "")
    _add(root, "protobuf", MODEL_FILE)
    _add_params(root, meta, model_type)
    _add_tensors(root, meta)
    training_set = meta.training_set
    _add(root, "source_data", (training_set and training_set.source) or "")
    _add(root, "source_size", (training_set and training_set.n_images) or 0)
    _add_labels(root, meta)
    prepro = _add(root, "prepro")
    _add(prepro, "name", PREPROCESS_NAME)
    prepro_params = _add(prepro, "params")
    for key, value in asdict(meta.preprocessing).items():
        _add(prepro_params, "param", value, name=key)
    metrics = meta.metrics or {}
    for tag, key in (
        ("accuracy", "accuracy"),
        ("precision", "macro_precision"),
        ("recall", "macro_recall"),
        ("f1score", "macro_f1"),
    ):
        _add(root, tag, float(metrics[key]) if key in metrics else None)
    _add_load(root, meta)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _add_params(root: ET.Element, meta: BundleMeta, model_type: str) -> None:
    size, channels = meta.input_size, meta.channels
    params = _add(root, "params")
    _add(params, "cnn", type=model_type, img_type="greyscale" if channels == 1 else "rgb")
    _add(params, "img_size", f"[{size}, {size}, {channels}]")
    _add(params, "filters", meta.model.params.get("filters", "") if meta.model else "")


def _add_tensors(root: ET.Element, meta: BundleMeta) -> None:
    size, channels = meta.input_size, meta.channels
    input_name = (meta.input and meta.input.name) or INPUT_NAME
    output_name = (meta.output and meta.output.name) or OUTPUT_NAME
    node = _add(_add(root, "inputs"), "input")
    _add(node, "name", input_name)
    _add(node, "operation", input_name)
    _add(node, "height", size)
    _add(node, "width", size)
    _add(node, "channels", channels)
    node = _add(_add(root, "outputs"), "output")
    _add(node, "name", output_name)
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
    _add(
        load,
        "training_time_per_image",
        float(training.time_per_image_ms or 0.0),
        unit="ms",
    )
    _add(load, "inference_time_per_image", float(meta.inference_ms_per_image or 0.0), unit="ms")
