"""The commands that run a library step let a bug through with its traceback, and a user's
error (a ForamflowError) through as one line: none catches ValueError around a whole run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.results import write_results
from foramflow.cli import app
from foramflow.errors import ForamflowError

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def grey_png(path, level=128, size=(24, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, level, dtype=np.uint8)).save(path)
    return path


def a_bug(*args, **kwargs):
    raise ValueError("a bug, not the user's error")


def assert_traceback_kept(result):
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, ValueError), result.output
    assert "error:" not in result.output and "failed:" not in result.output


def test_a_bug_in_segmentation_keeps_its_traceback(tmp_path, monkeypatch):
    import foramflow.imaging.segment

    monkeypatch.setattr(foramflow.imaging.segment, "segment_image", a_bug)
    tray = grey_png(tmp_path / "S1" / "tray.png")
    assert_traceback_kept(invoke("segment", tray, "--out", tmp_path / "crops"))


def test_a_bug_in_stacking_keeps_its_traceback(tmp_path, monkeypatch):
    import foramflow.imaging.stack

    monkeypatch.setattr(foramflow.imaging.stack, "fuse_stack", a_bug)
    planes = [grey_png(tmp_path / "obj" / f"plane_{i}.png", 100 + 20 * i) for i in range(2)]
    assert_traceback_kept(invoke("stack", *planes, "--out", tmp_path / "fused.png"))
    assert_traceback_kept(invoke("stack", tmp_path / "obj", "--out", tmp_path / "fused"))


def test_a_bug_in_the_abundance_analysis_keeps_its_traceback(tmp_path, monkeypatch):
    from foramflow.abundance import analysis

    monkeypatch.setattr(analysis, "analyse_core", a_bug)
    results = write_results(tmp_path / "results")
    assert_traceback_kept(invoke("abundance", results, "--out", tmp_path / "out"))


def test_a_bug_in_training_keeps_its_traceback(tmp_path, monkeypatch):
    from foramflow.training.full import FullTrainer
    from image_sets import write_shape_set

    monkeypatch.setattr(FullTrainer, "run", a_bug)
    data = write_shape_set(tmp_path / "data", n_per_class=4)
    args = ["--model", "base_cyclic", "--epochs", "1"]
    assert_traceback_kept(invoke("train", data, "--out", tmp_path / "run", *args))


@pytest.mark.parametrize("prepare", ["a file in it", "no checkpoint"])
def test_a_run_folder_that_cannot_take_the_run_is_one_error_line(tmp_path, prepare):
    from image_sets import write_shape_set

    data = write_shape_set(tmp_path / "data", n_per_class=4)
    run = tmp_path / "run"
    run.mkdir()
    args = ["train", data, "--out", run, "--epochs", "1"]
    if prepare == "a file in it":
        (run / "notes.txt").write_text("mine")
        expected = f"error: {run}: run folder already exists and is not empty"
    else:
        args.append("--resume")
        expected = f"error: {run}: nothing to resume (no checkpoint_last.pt)"
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()).startswith(expected)


def test_the_library_raises_foramflow_errors_for_the_run_folder(tmp_path):
    from foramflow.training.config import TrainConfig
    from foramflow.training.full import FullTrainer

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    config = TrainConfig(
        model="base_cyclic", data=str(tmp_path / "data"), out=str(tmp_path / "run")
    )
    with pytest.raises(ForamflowError, match="already exists"):
        FullTrainer(config)
    with pytest.raises(ForamflowError, match="nothing to resume"):
        FullTrainer(config.model_copy(update={"out": str(tmp_path / "empty")}), resume=True)
    with pytest.raises(ForamflowError, match="training-set folder not found"):
        from foramflow.data.dataset import load_image_set

        load_image_set(tmp_path / "data")
