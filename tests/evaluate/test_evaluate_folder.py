"""``foramflow evaluate`` as a library step, timed with the engine classify runs."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from classify.conftest import BRIGHT, DARK, write_bundle, write_grey_png
from foramflow.bundle.engine import Engine
from foramflow.cli import app
from foramflow.evaluate.folder import EvaluationError, evaluate_folder
from foramflow.progress import Recorded


@pytest.fixture
def labelled(tmp_path):
    """70 images per class: two batches of classify's 64 in all."""
    root = tmp_path / "labelled"
    for label, level in (("dark", DARK), ("bright", BRIGHT)):
        for i in range(70):
            write_grey_png(root / label / f"{i:03d}.png", level)
    return root


@pytest.fixture
def engine_calls(monkeypatch):
    """The batch sizes the classify engine was given, in order."""
    calls = []
    real = Engine.predict

    def counting(self, batch):
        calls.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(Engine, "predict", counting)
    return calls


def test_evaluate_times_inference_with_the_classify_engine(tmp_path, labelled, engine_calls):
    bundle = write_bundle(tmp_path / "bundle")
    result = evaluate_folder(bundle, labelled, tmp_path / "eval", workers=1)
    # one warm-up batch, then the 140 images in batches of 64, as classify runs them
    assert engine_calls == [64, 64, 64, 12]
    assert result.metrics["accuracy"] == 1.0 and result.n_images == 140
    assert result.evaluation.inference_ms_per_image > 0
    assert "ONNX Runtime, fp32" in result.evaluation.inference_setup
    assert "batches of 64" in result.evaluation.inference_setup
    html = result.report.read_text()
    assert "the classify engine" in html and "batches of 64" in html


def test_evaluate_command_says_how_inference_was_timed(tmp_path, labelled, engine_calls):
    bundle = write_bundle(tmp_path / "bundle", input={"size": 16, "channels": 1})
    result = CliRunner().invoke(
        app, ["evaluate", str(bundle), str(labelled), "--out", str(tmp_path / "eval")]
    )
    assert result.exit_code == 0, result.output
    assert len(engine_calls) == 1 + math.ceil(140 / 64)
    assert "accuracy 1.0000" in result.output
    assert "ms per image (ONNX Runtime, fp32" in result.output


def test_evaluate_folder_leaves_out_unknown_classes_and_lists_unreadable_images(tmp_path, labelled):
    write_grey_png(labelled / "other" / "x.png", DARK)
    (labelled / "dark" / "broken.png").write_bytes(b"not a png")
    progress = Recorded()
    result = evaluate_folder(
        write_bundle(tmp_path / "bundle"), labelled, tmp_path / "eval", progress=progress
    )
    assert result.unknown_classes == ["other"]
    assert "left out, unknown to the bundle: other" in progress.messages
    assert list(result.skipped) == [labelled / "dark" / "broken.png"]
    assert result.n_images == 140


def test_evaluate_folder_refuses_a_set_of_unknown_classes(tmp_path):
    for name in ("other", "unknown"):
        write_grey_png(tmp_path / "set" / name / "x.png", DARK)
    with pytest.raises(EvaluationError, match="none of its classes is known to the bundle"):
        evaluate_folder(write_bundle(tmp_path / "bundle"), tmp_path / "set", tmp_path / "eval")
