"""The label commands, without serving."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from foramflow.cli import app
from foramflow.label.store import LabelStore

runner = CliRunner()


def test_add_predict_export(tmp_path: Path, image_root: Path, brightness_bundle: Path):
    project = tmp_path / "proj"
    result = runner.invoke(app, ["label", str(project), "--images", str(image_root), "--no-serve"])
    assert result.exit_code == 0, result.output
    assert LabelStore(project).count() == 12

    result = runner.invoke(app, ["label-predict", str(project), str(brightness_bundle)])
    assert result.exit_code == 0, result.output
    store = LabelStore(project)
    store.accept_predictions(label=None, min_score=0.9, user="anna")

    out = tmp_path / "train"
    result = runner.invoke(app, ["label-export", str(project), str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(len(list(p.iterdir())) for p in out.iterdir() if p.is_dir()) == [6, 6]


def test_clear_errors(tmp_path: Path):
    result = runner.invoke(
        app, ["label", str(tmp_path / "p"), "--images", "/no/such", "--no-serve"]
    )
    assert result.exit_code == 2
    assert "/no/such: not a folder" in result.output
    result = runner.invoke(app, ["label-export", str(tmp_path / "empty"), str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no label project" in " ".join(result.output.split())
