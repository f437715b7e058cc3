"""The bundle as ParticleTrieur and MISO read it (model.nhwc.onnx, network_info.xml), and
their networks given to foramflow.

network_info.xml is read here by the rules of MISO 3.1.25's readers (``ModelInfo.from_xml``,
``load_onnx_from_xml``) and ParticleTrieur's ``NetworkInfo``; benchmarks/interop.py runs the
real tools.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from datetime import datetime

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from classify.conftest import brightness_model
from foramflow.bundle import Bundle, BundleError, BundleMeta, write_bundle
from foramflow.bundle.network_info import miso_date, network_info_xml
from foramflow.bundle.nhwc import NhwcError, nhwc_model
from foramflow.cli import app
from foramflow.imaging.preprocess import PreprocessSpec, load_and_preprocess
from image_sets import write_shape_set


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bundle trained for two epochs on 16 px shapes, and images of its classes."""
    from foramflow.training.step import train

    data = write_shape_set(tmp_path_factory.mktemp("shapes"), n_per_class=12, size=24)
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(
        data, out, model="base_cyclic", input_size=16, epochs=2, batch_size=8,
        min_per_class=5, seed=0, workers=1,
    )  # fmt: skip
    return out / "bundle", sorted(data.rglob("*.png"))


def miso_read(xml_path):
    """network_info.xml read as MISO's readers and ParticleTrieur's NetworkInfo read it."""
    root = ET.parse(xml_path).getroot()
    date = datetime.strptime(root.findtext("date"), "%Y-%m-%d_%H%M%S")  # ModelInfo.from_xml
    cnn = root.find(".//params/cnn")  # load_onnx_from_xml: the image type is in its text
    img_type = "k" if cnn is not None and cnn.text and "'greyscale'" in cnn.text else "rgb"
    tensor = root.find("inputs").findall("input")[0]
    img_size = [int(tensor.findtext(k)) for k in ("height", "width", "channels")]
    labels = [label.findtext("code") for label in root.findall(".//labels/label")]
    for label in root.findall(".//labels/label"):  # ParticleTrieur's NetworkLabel
        int(label.findtext("count"))
        [float(label.findtext(k)) for k in ("precision", "recall", "f1score", "support")]
    [float(root.findtext(k)) for k in ("accuracy", "precision", "recall", "f1score")]
    prepro = [float(p.text) for p in root.findall("prepro/params/param")]  # miso-onnx
    protobuf = xml_path.parent / root.findtext("protobuf")
    return dict(date=date, img_type=img_type, img_size=img_size, labels=labels,
                prepro=prepro, protobuf=protobuf)  # fmt: skip


def test_the_particletrieur_network_gives_model_onnx_probabilities_on_nhwc_images(trained):
    folder, images = trained
    bundle = Bundle.load(folder)
    info = miso_read(folder / "network_info.xml")
    assert info["protobuf"] == folder / "model.nhwc.onnx"
    model = onnx.load(info["protobuf"])
    opsets = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    assert model.ir_version <= 8 and max(opsets) <= 17
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == info["img_size"] == [16, 16, 1]

    batch = np.stack([load_and_preprocess(p, bundle.spec) for p in images[::4]])
    nchw = ort.InferenceSession(str(folder / "model.onnx"))
    nhwc = ort.InferenceSession(str(info["protobuf"]))
    expected = nchw.run(None, {"image": batch})[0]
    got = nhwc.run(None, {nhwc.get_inputs()[0].name: batch.transpose(0, 2, 3, 1)})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert len(set(expected.argmax(1))) > 1  # a network that tells the classes apart


def test_network_info_reads_as_miso_reads_it(trained):
    folder, _ = trained
    bundle = Bundle.load(folder)
    info = miso_read(folder / "network_info.xml")
    created = datetime.strptime(bundle.meta.created, "%Y-%m-%dT%H:%M:%SZ")
    assert info["date"] == created
    assert info["img_type"] == "k"
    assert info["labels"] == bundle.labels == ["bar", "disc", "ring"]
    assert info["prepro"] == [255.0, 0.0, 1.0]
    root = ET.parse(folder / "network_info.xml").getroot()
    assert float(root.findtext("accuracy")) == pytest.approx(bundle.meta.metrics["accuracy"])


def test_a_colour_network_is_rgb_and_a_grey_one_greyscale():
    for channels, img_type in ((3, "rgb"), (1, "k")):
        meta = BundleMeta(labels=["a", "b"], preprocessing=PreprocessSpec(24, channels))
        root = ET.fromstring(network_info_xml(meta))
        cnn = root.findtext("params/cnn")
        assert ("k" if "'greyscale'" in cnn else "rgb") == img_type
        assert f"'img_shape': [24, 24, {channels}]" in cnn
        assert root.findtext("inputs/input/channels") == str(channels)


def test_dates_are_written_as_miso_parses_them():
    assert miso_date("2026-12-07T12:26:54Z") == "2026-12-07_122654"
    assert miso_date("2026-12-07T12:26:54+00:00") == "2026-12-07_122654"
    datetime.strptime(miso_date(None), "%Y-%m-%d_%H%M%S")


def test_a_hand_written_onnx_model_gets_its_nhwc_twin(tmp_path):
    meta = BundleMeta(labels=["dark", "bright"], preprocessing=PreprocessSpec(16))
    folder = write_bundle(tmp_path / "b", meta, brightness_model(conv=True).SerializeToString())
    session = ort.InferenceSession(str(folder / "model.nhwc.onnx"))
    image = np.full((1, 16, 16, 1), 235 / 255, np.float32)
    assert session.run(None, {"image": image})[0].argmax() == 1


def test_a_network_that_cannot_be_lowered_makes_a_bundle_only_foramflow_runs(tmp_path, caplog):
    meta = BundleMeta(labels=["a", "b"], preprocessing=PreprocessSpec(16))
    with pytest.raises(NhwcError, match="not an ONNX model"):
        nhwc_model(b"not onnx")
    with caplog.at_level(logging.WARNING, logger="foramflow"):
        folder = write_bundle(tmp_path / "b", meta, b"not onnx")
    assert not (folder / "model.nhwc.onnx").exists()
    assert ET.parse(folder / "network_info.xml").getroot().findtext("protobuf") == "model.onnx"
    assert "model.onnx: no model.nhwc.onnx for ParticleTrieur and MISO" in caplog.text


MISO_XML = """<network version="2.1"><name>ResNet50</name><type>resnet50</type>
<date>2025-05-21_152437</date><protobuf>model.onnx</protobuf>
<labels><label><code>a</code></label><label><code>b</code></label></labels></network>"""


@pytest.fixture
def miso_run(tmp_path):
    """A MISO training run's folder: model_onnx/ holds network_info.xml and model.onnx."""
    run = tmp_path / "miso_run"
    (run / "model_onnx").mkdir(parents=True)
    (run / "model_onnx" / "network_info.xml").write_text(MISO_XML)
    (run / "model_onnx" / "model.onnx").write_bytes(b"onnx")
    return run


@pytest.mark.parametrize("given", ["model_onnx", ".", "model_onnx/network_info.xml"])
def test_a_miso_network_is_refused_in_one_line_saying_what_to_do(miso_run, given):
    path = miso_run / given
    with pytest.raises(BundleError) as raised:
        Bundle.load(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: a MISO or ParticleTrieur network ('ResNet50', resnet50")
    assert "2 classes" in message and "foramflow cannot run it" in message
    assert "foramflow train project.xml" in message and "\n" not in message


def test_classify_names_a_miso_network_in_one_error_line(miso_run, tmp_path):
    (tmp_path / "images").mkdir()
    result = CliRunner().invoke(
        app, ["classify", str(miso_run / "model_onnx"), str(tmp_path / "images"), "--out",
              str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "a MISO or ParticleTrieur network" in lines[0]


def test_a_folder_without_network_info_is_still_just_not_a_bundle(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"not a model bundle \(model\.json is missing\)"):
        Bundle.load(tmp_path / "empty")
