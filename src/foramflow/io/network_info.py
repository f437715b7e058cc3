"""``network_info.xml``: the model described in the MISO / ParticleTrieur schema.

Written so that ParticleTrieur (and miso's loader) can use a foramflow model, without the
defects of miso 3.1.25's own files: a ``<params>`` block carries the image type that miso's
loader reads (``params/cnn``); ``training_epochs`` is the number actually run; every time
states its unit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

NETWORK_INFO_VERSION = "2.1"


def _add(parent: ET.Element, tag: str, text=None, **attrib) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: str(v) for k, v in attrib.items()})
    if text is not None:
        element.text = f"{text:.6g}" if isinstance(text, float) else str(text)
    return element


def network_info_xml(meta: dict) -> str:
    """Render the XML from a bundle's model.json dictionary."""
    size = meta["input"]["size"]
    channels = meta["input"]["channels"]
    metrics = meta.get("metrics", {})
    per_class = metrics.get("per_class", {})
    training = meta.get("training", {})
    counts = meta.get("training_set", {}).get("counts", {})

    root = ET.Element("network", version=NETWORK_INFO_VERSION)
    _add(root, "name", meta["name"])
    _add(root, "description", meta.get("description", ""))
    _add(root, "type", meta["model"]["name"])
    _add(root, "date", meta["created"])
    _add(root, "protobuf", "model.onnx")
    params = _add(root, "params")
    _add(
        params, "cnn", type=meta["model"]["name"], img_type="greyscale" if channels == 1 else "rgb"
    )
    _add(params, "img_size", f"[{size}, {size}, {channels}]")
    _add(params, "filters", meta["model"]["params"].get("filters", ""))
    inputs = _add(root, "inputs")
    node = _add(inputs, "input")
    _add(node, "name", meta["input"]["name"])
    _add(node, "operation", meta["input"]["name"])
    _add(node, "height", size)
    _add(node, "width", size)
    _add(node, "channels", channels)
    outputs = _add(root, "outputs")
    node = _add(outputs, "output")
    _add(node, "name", meta["output"]["name"])
    _add(node, "operation", meta["output"]["name"])
    _add(node, "height", len(meta["labels"]))
    _add(node, "width", 0)
    _add(node, "channels", 0)
    _add(root, "source_data", meta.get("training_set", {}).get("source", ""))
    _add(root, "source_size", meta.get("training_set", {}).get("n_images", 0))
    labels = _add(root, "labels")
    for name in meta["labels"]:
        label = _add(labels, "label")
        _add(label, "code", name)
        _add(label, "count", counts.get(name, 0))
        stats = per_class.get(name, {})
        for tag, key in (("precision", "precision"), ("recall", "recall"), ("f1score", "f1")):
            _add(label, tag, float(stats.get(key, 0.0)))
        _add(label, "support", stats.get("support", 0))
    prepro = _add(root, "prepro")
    _add(prepro, "name", meta["preprocessing"]["name"])
    prepro_params = _add(prepro, "params")
    for key, value in meta["preprocessing"]["params"].items():
        _add(prepro_params, "param", value, name=key)
    for tag, key in (
        ("accuracy", "accuracy"),
        ("precision", "macro_precision"),
        ("recall", "macro_recall"),
        ("f1score", "macro_f1"),
    ):
        _add(root, tag, float(metrics[key]) if key in metrics else None)
    load = _add(root, "load")
    _add(load, "training_epochs", training.get("epochs", 0))
    _add(load, "training_time", float(training.get("time_s", 0.0)), unit="s")
    _add(load, "training_split", float(training.get("val_fraction", 0.2)))
    _add(
        load,
        "training_time_per_image",
        float(training.get("time_per_image_ms", 0.0)),
        unit="ms",
    )
    _add(
        load,
        "inference_time_per_image",
        float(meta.get("inference_ms_per_image", 0.0)),
        unit="ms",
    )
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_network_info(path: str | Path, meta: dict) -> None:
    Path(path).write_text(network_info_xml(meta))
