"""``export`` re-exports a run's best checkpoint: a bad checkpoint or a full disk is one line."""

from __future__ import annotations

import errno

import pytest
import torch
from typer.testing import CliRunner

import foramflow.bundle.folder as folder_module
from foramflow.bundle import Bundle
from foramflow.bundle.folder import write_bundle
from foramflow.cli import app
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.models.registry import create_model
from foramflow.training.export import training_meta

PARAMS = {"filters": 4, "dense": 8}


@pytest.fixture
def run(tmp_path):
    """A finished run folder as export reads it: bundle/model.json and checkpoint_best.pt."""
    folder = tmp_path / "run"
    spec = PreprocessSpec(size=16, channels=1)
    meta = training_meta(
        name="run", model_name="base_cyclic", model_params=PARAMS, labels=["a", "b"], spec=spec
    )
    write_bundle(folder / "bundle", meta, b"not used by export")
    network = create_model("base_cyclic", n_classes=2, input_size=16, channels=1, **PARAMS)
    torch.save(network.state_dict(), folder / "checkpoint_best.pt")
    return folder


def export(run, out):
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    return " ".join(result.output.split())


def test_the_run_exports(run, tmp_path):
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert Bundle.load(tmp_path / "again").labels == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_full_disk_is_one_line_naming_the_bundle(run, tmp_path, monkeypatch):
    real = folder_module.atomic_write

    def disk_full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(
        folder_module, "atomic_write", lambda target, write, **kw: real(target, disk_full, **kw)
    )
    out = tmp_path / "again"
    text = export(run, out)
    assert text.startswith("error:") and "No space left on device" in text
    assert str(out) in text and "[(" not in text
    assert not out.exists() and [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("damage", ["truncated", "crafted", "nan"])
def test_a_bad_best_checkpoint_is_one_line_naming_it(run, tmp_path, damage):
    path = run / "checkpoint_best.pt"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "crafted":
        torch.save({"x": Exception("an object, not a tensor")}, path)
    else:
        weights = torch.load(path, weights_only=True)
        next(v for v in weights.values() if v.is_floating_point()).fill_(float("nan"))
        torch.save(weights, path)
    text = export(run, tmp_path / "again")
    assert text.startswith(f"error: {path}: "), text
    assert not (tmp_path / "again").exists()
