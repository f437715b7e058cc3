"""A run's config.yaml works from any folder: ``train --config runs/x/config.yaml``."""

from __future__ import annotations

import os

import yaml
from typer.testing import CliRunner

from foramflow.cli import app
from foramflow.training.config import TrainConfig

runner = CliRunner()
TINY = ["--input-size", "32", "--epochs", "1", "--batch-size", "32", "--min-per-class", "10"]


def test_a_runs_config_trains_again_from_another_folder(tmp_path, shape_set, monkeypatch):
    first, other = tmp_path / "project", tmp_path / "elsewhere"
    first.mkdir(), other.mkdir()
    monkeypatch.chdir(first)
    data = os.path.relpath(shape_set, first)
    result = runner.invoke(app, ["train", data, "--out", "runs/x", "--workers", "1", *TINY])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((first / "runs" / "x" / "config.yaml").read_text())
    assert saved["data"] == str(shape_set) and saved["out"] == str(first / "runs" / "x")

    monkeypatch.chdir(other)
    config = "../project/runs/x/config.yaml"
    result = runner.invoke(app, ["train", "--config", config, "--out", "again", "--seed", "1"])
    assert result.exit_code == 0, result.output
    again = yaml.safe_load((other / "again" / "config.yaml").read_text())
    assert again["data"] == str(shape_set) and again["seed"] == 1
    assert again["out"] == str(other / "again")


def test_relative_paths_in_a_config_file_are_taken_from_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "c.yaml"
    path.write_text("data: ../set\nout: runs/a\nfeature_cache: /abs/cache\nmodel: base_cyclic\n")
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.load(path, weights="w.pth")
    assert config.data == os.path.join(folder, "../set")
    assert config.out == os.path.join(folder, "runs/a")
    assert config.feature_cache == "/abs/cache"
    assert config.weights == "w.pth"  # the command line's, relative to where it runs
