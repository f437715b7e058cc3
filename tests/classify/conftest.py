"""A tiny model bundle whose answers are known by construction, and trees of tiny images.

The network is a mean-brightness classifier: GlobalAveragePool → MatMul → Add → Softmax with
fixed weights, so that for an image of mean brightness m (in [0, 1])

    P(bright) = sigmoid(STEEPNESS · (2m − 1)),  P(dark) = 1 − P(bright).

A uniform image of grey level v has m = v / 255 exactly after preprocessing, so dark (v = 20)
and bright (v = 235) images are classified with near certainty and mid-grey (v = 128) ones
are "unsure" at any threshold above 0.52.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from foramflow.bundle import BundleMeta
from foramflow.bundle import write_bundle as write_bundle_folder
from foramflow.imaging.preprocess import PreprocessSpec

LABELS = ("dark", "bright")
STEEPNESS = 20.0
DARK, BRIGHT, MID = 20, 235, 128

# sample → list of grey levels; S2 also has a nested folder (images are found recursively)
TREE = {
    "S1": [DARK, DARK, DARK, BRIGHT],
    "S2": [DARK, DARK, BRIGHT, BRIGHT, MID],
    "S3": [BRIGHT, BRIGHT, BRIGHT, BRIGHT],
}
EXPECTED_COUNTS = {
    # sample: (dark, bright, unsure, error)
    "S1": (3, 1, 0, 0),
    "S2": (2, 2, 1, 0),
    "S3": (0, 4, 0, 0),
}


def p_bright(grey_level: int) -> float:
    m = grey_level / 255
    return 1 / (1 + np.exp(-STEEPNESS * (2 * m - 1)))


def brightness_model(
    size: int = 16, steepness: float = STEEPNESS, *, conv: bool = False
) -> onnx.ModelProto:
    """``conv``: the image passes two 1×1 convolutions, of weights 2 and 1/2, first (same
    answers), so that quantisation has a convolution's weights to work on besides the stem's."""
    weights = np.array([[-steepness, steepness]], dtype=np.float32)
    bias = np.array([steepness / 2, -steepness / 2], dtype=np.float32)
    initializer = [
        numpy_helper.from_array(weights, "weights"),
        numpy_helper.from_array(bias, "bias"),
    ]
    nodes = []
    if conv:
        one = np.ones((1, 1, 1, 1), dtype=np.float32)
        initializer.append(numpy_helper.from_array(one * 2, "stem_weight"))
        initializer.append(numpy_helper.from_array(one / 2, "halve"))
        nodes.append(helper.make_node("Conv", ["image", "stem_weight"], ["stem"], name="stem"))
        nodes.append(helper.make_node("Conv", ["stem", "halve"], ["convolved"]))
    nodes += [
        helper.make_node("GlobalAveragePool", ["convolved" if conv else "image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["mean"], axis=1),
        helper.make_node("MatMul", ["mean", "weights"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mean_brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, size, size])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", len(LABELS)])],
        initializer=initializer,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_bundle(
    path: Path, *, threshold: float = 0.8, steepness: float = STEEPNESS, conv=False, **meta
) -> Path:
    """A bundle folder holding the brightness model (``conv``: see :func:`brightness_model`);
    extra ``meta`` goes into model.json."""
    description = BundleMeta(
        labels=list(LABELS),
        preprocessing=PreprocessSpec(size=16, channels=1),
        threshold=threshold,
        **meta,
    )
    model = brightness_model(steepness=steepness, conv=conv).SerializeToString()
    return write_bundle_folder(path, description, model)


def write_grey_png(path: Path, level: int, size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, level, dtype=np.uint8)).save(path)
    return path


def write_tree(root: Path, tree: dict[str, list[int]] = TREE) -> Path:
    """Per-sample folders of uniform grey PNGs; the last image of S2 lies in a subfolder."""
    for sample, levels in tree.items():
        for i, level in enumerate(levels):
            sub = "nested/" if sample == "S2" and i == len(levels) - 1 else ""
            write_grey_png(root / sample / f"{sub}img_{i:03d}.png", level)
    return root


@pytest.fixture
def kit() -> SimpleNamespace:
    """The known answers and the writers above, for tests (conftest cannot be imported)."""
    return SimpleNamespace(
        labels=LABELS,
        prob_columns=[f"prob_{label}" for label in LABELS],
        dark=DARK,
        bright=BRIGHT,
        mid=MID,
        expected_counts=EXPECTED_COUNTS,
        p_bright=p_bright,
        write_bundle=write_bundle,
        brightness_model=brightness_model,
        write_grey_png=write_grey_png,
        write_tree=write_tree,
    )


@pytest.fixture
def bundle(tmp_path) -> Path:
    return write_bundle(tmp_path / "bundle")


@pytest.fixture
def tree(tmp_path) -> Path:
    return write_tree(tmp_path / "images")


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch) -> Path:
    """The user's cache folder, where records of bundles that cannot be written go; private
    to each test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(autouse=True)
def cpu_without_bf16(monkeypatch):
    """Tests see a CPU without native bf16, so that "auto" means the same on every machine;
    a test of bf16 itself says otherwise."""

    def set_bf16(present: bool) -> None:
        for module in ("foramflow.bundle.engine", "foramflow.bundle.precision"):
            monkeypatch.setattr(f"{module}.cpu_has_bf16", lambda: present)

    set_bf16(False)
    return set_bf16


@pytest.fixture(autouse=True)
def reduced_precision_times_faster(monkeypatch):
    """The timing of candidate settings (:mod:`foramflow.bundle.tuning`) finds a reduced
    precision twice as fast as fp32 and more threads faster, so that what "auto" is allowed
    to take is what these tests see, whatever this machine's speed with a toy network."""

    def rate(engine, images) -> float:
        return len(images) * engine.threads * (1.0 if engine.precision == "fp32" else 2.0)

    monkeypatch.setattr("foramflow.bundle.tuning._images_per_second", rate)


@pytest.fixture
def small_checks_suffice(monkeypatch):
    """Precision checks on the few images of :data:`TREE` count as evidence for "auto", for
    tests of where records go and what "auto" does with them (not of how many it needs)."""
    monkeypatch.setattr("foramflow.bundle.engine.MIN_CHECK_IMAGES", 1)


def model_sha256(bundle: Path) -> str:
    """The hash a precision record of this bundle folder names its network by."""
    import hashlib

    return hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()


@pytest.fixture
def network_hash():
    return model_sha256
