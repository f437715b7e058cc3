"""Fixtures: a tiny over-confident ONNX bundle, labelled images for it, a predictions table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from foramflow.bundle import BundleMeta
from foramflow.bundle import write_bundle as write_bundle_folder
from foramflow.imaging.preprocess import PreprocessSpec

# Three classes told apart by mean brightness alone.
LEVELS = {"dark": 0.25, "mid": 0.5, "bright": 0.75}
SHARPNESS = 400.0  # logit scale: far sharper than the brightness overlap justifies


def brightness_model(levels, sharpness: float) -> bytes:
    """ONNX: mean brightness x → softmax(s (2 c_k x − c_k²)), i.e. −s (x − c_k)² up to a
    shared term: the nearest brightness level wins, with confidence set by ``sharpness``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    centres = np.asarray(levels, np.float32)
    weight = (sharpness * 2 * centres)[None, :].astype(np.float32)
    bias = (-sharpness * centres**2).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weight"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, len(centres)])],
        initializer=[
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_bundle(folder: Path, *, confusion=None) -> Path:
    meta = BundleMeta(
        labels=list(LEVELS),
        preprocessing=PreprocessSpec(size=8, channels=1),
        threshold=0.8,
        validation_confusion=None
        if confusion is None
        else {"labels": list(LEVELS), "matrix": confusion},
    )
    model = brightness_model(list(LEVELS.values()), SHARPNESS)
    return write_bundle_folder(folder, meta, model)


def write_labelled_images(root: Path, per_class: int, *, seed: int = 0) -> Path:
    """Folder per class of 8×8 grey PNGs whose mean brightness scatters around the level
    (sd 0.1), so neighbouring classes overlap."""
    rng = np.random.default_rng(seed)
    for name, level in LEVELS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = level + rng.normal(0, 0.1) + rng.normal(0, 0.02, (8, 8))
            pixels = np.clip(image * 255, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i:03d}.png")
    return root


@pytest.fixture
def tiny_bundle(tmp_path) -> Path:
    return write_bundle(tmp_path / "bundle")


@pytest.fixture
def labelled_images(tmp_path) -> Path:
    return write_labelled_images(tmp_path / "validation", per_class=30)


def predictions_table(rows) -> pd.DataFrame:
    """A predictions table from (sample, depth, class, probs) tuples, as classify writes it."""
    labels = list(LEVELS)
    records = []
    for i, (sample, depth, label, probs) in enumerate(rows):
        status = "unsure" if label == "unsure" else ("error" if label == "" else "ok")
        record = {
            "path": f"{sample}/{i}.png",
            "sample": sample,
            "depth": depth,
            "class": label,
            "score": float(np.max(probs)) if probs is not None else np.nan,
            "status": status,
            "error": "unreadable" if status == "error" else "",
        }
        for k, name in enumerate(labels):
            record[f"prob_{name}"] = np.nan if probs is None else probs[k]
        records.append(record)
    return pd.DataFrame.from_records(records)


@pytest.fixture
def make_predictions():
    """Factory: :func:`predictions_table`."""
    return predictions_table


@pytest.fixture
def make_bundle():
    """Factory: :func:`write_bundle`."""
    return write_bundle


# A core of two samples (s0, s1) of 20 images each: 40 % dark, 30 % mid, 30 % bright.
CONFUSION = [[45, 5, 0], [15, 35, 0], [0, 0, 50]]  # rows true dark, mid, bright
PROBS = {"dark": [0.9, 0.05, 0.05], "mid": [0.05, 0.9, 0.05], "bright": [0.05, 0.05, 0.9]}
PER_SAMPLE = ["dark"] * 8 + ["mid"] * 6 + ["bright"] * 6


def rows():
    return [
        (sample, depth, label, PROBS[label])
        for sample, depth in (("s0", 1.0), ("s1", 2.0))
        for label in PER_SAMPLE
    ]


@pytest.fixture
def results(tmp_path, make_predictions, make_bundle):
    """A classify results folder of the two samples above, with a bundle to correct them."""
    bundle = make_bundle(tmp_path / "bundle", confusion=CONFUSION)
    folder = tmp_path / "results"
    folder.mkdir()
    make_predictions(rows()).to_parquet(folder / "predictions.parquet")
    (folder / "run.json").write_text(json.dumps({"bundle": str(bundle)}))
    return folder
