"""Fixtures for the labelling app: tiny image folders with known truth, a tiny model bundle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser_kit import serve, write_trays
from foramflow.bundle import BundleMeta, write_bundle
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.label.store import LabelStore

#: Where the browser tests' screenshots for the manual go with FORAMFLOW_SCREENSHOTS=1.
MANUAL_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def save_grey(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels * 255, 0, 255).astype(np.uint8)).save(path)
    return path


def particle(brightness: float, stripes: int, size: int = 24) -> np.ndarray:
    """A bright or dark square with ``stripes`` faint stripes, so features differ."""
    x = np.linspace(0, np.pi * stripes, size)
    return np.clip(brightness + 0.08 * np.sin(x)[None, :] * np.ones((size, 1)), 0, 1)


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """root/S1_10cm and root/S2_20cm, 6 images each: even index dark (0.2), odd bright (0.8)."""
    root = tmp_path / "images"
    for sample in ("S1_10cm", "S2_20cm"):
        for i in range(6):
            brightness = 0.8 if i % 2 else 0.2
            save_grey(root / sample / f"p{i:02d}.png", particle(brightness, stripes=i + 1))
    return root


@pytest.fixture
def store(tmp_path: Path, image_root: Path) -> LabelStore:
    store = LabelStore(tmp_path / "project")
    store.add_images(image_root)
    return store


@pytest.fixture
def brightness_bundle(tmp_path: Path) -> Path:
    """A bundle whose ONNX model says 'bright' when mean intensity > 0.5, else 'dark'."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Flatten", ["mean4"], ["mean"], axis=1),
        helper.make_node("Sub", ["mean", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["z"]),
        helper.make_node("Neg", ["z"], ["minus_z"]),
        helper.make_node("Concat", ["minus_z", "z"], ["logits"], axis=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 16, 16])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("gain", TensorProto.FLOAT, [], [20.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = BundleMeta(
        name="brightness-v1",
        labels=["dark", "bright"],
        preprocessing=PreprocessSpec(size=16, channels=1),
        threshold=0.8,
    )
    return write_bundle(tmp_path / "bundle", meta, model.SerializeToString())


@pytest.fixture
def make_image():
    """save_grey(path, pixels) for tests that need one more image."""
    return save_grey


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """The folder for the browser tests' screenshots: the manual's images with
    ``FORAMFLOW_SCREENSHOTS=1`` (``make screenshots``), else a temporary folder, so that a
    test run leaves the tracked pictures alone."""
    folder = MANUAL_IMAGES if os.environ.get("FORAMFLOW_SCREENSHOTS") == "1" else tmp_path / "shots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def trays(tmp_path: Path, request) -> Path:
    """Synthetic trays: the test module's ``PARTICLES`` per sample, at its ``PIXELS_PER_MM``."""
    module = request.module
    return write_trays(tmp_path / "trays", module.PARTICLES, module.PIXELS_PER_MM)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder the app is yet to create."""
    return tmp_path / "project"


@pytest.fixture
def served_project(project: Path):
    """The app serving ``project`` on a free port: its address."""
    with serve(project) as url:
        yield url
