"""Checkpoints from a shared run folder run no code, and a bad one is refused in one line."""

from __future__ import annotations

import errno
import pickle

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import foramflow.training.checkpoint as checkpoint_module
from foramflow.cli import app
from foramflow.progress import Quiet
from foramflow.training.checkpoint import CheckpointError, read_checkpoint
from foramflow.training.config import TrainConfig
from foramflow.training.export import export_onnx
from foramflow.training.fit import Batches, FitSettings, fit
from foramflow.training.run_folder import LAST_CHECKPOINT
from image_sets import write_shape_set


class WritesAMarker:
    """Unpickled, it writes a file: what a crafted checkpoint would do with a shell."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def one_line(output: str) -> str:
    return " ".join(output.split())


# -- a tiny network trained by the fit loop ------------------------------------------------


def tiny_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.3), nn.Linear(8, 2))


def tiny_fit(out, *, progress=None, resume=False, epochs=4) -> tuple[nn.Module, dict]:
    module = tiny_network()
    x = torch.randn(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    batches = Batches(module=module, train_x=x, train_y=y, validate=lambda m: (1.0, 0.5))
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    settings = FitSettings(batch_size=8, seed=0, epochs=epochs)
    out.mkdir(parents=True, exist_ok=True)
    state = fit(batches, optimizer, settings, out=out, progress=progress, resume=resume)
    return module, state


class InterruptInEpoch(Quiet):
    """Interrupts (as Ctrl-C or a kill does) in the middle of epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def task(self, description, total, **fields):
        task = super().task(description, total, **fields)
        if description.startswith(f"Epoch {self.epoch}/"):
            calls = iter(range(total))

            def advance(n=1, **fields):
                if next(calls) == total // 2:
                    raise KeyboardInterrupt

            task.advance = advance
        return task


def test_a_run_killed_mid_epoch_resumes_to_the_same_network_to_the_byte(tmp_path):
    straight, _ = tiny_fit(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        tiny_fit(tmp_path / "resumed", progress=InterruptInEpoch(3))
    assert read_checkpoint(tmp_path / "resumed" / LAST_CHECKPOINT)["state"]["epoch"] == 2
    resumed, state = tiny_fit(tmp_path / "resumed", resume=True)
    assert state["epoch"] == 4
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    for name, network in (("straight", straight), ("resumed", resumed)):
        export_onnx(network, tmp_path / f"{name}.onnx", input_size=4, channels=1)
    assert (tmp_path / "straight.onnx").read_bytes() == (tmp_path / "resumed.onnx").read_bytes()


def test_a_last_checkpoint_holds_only_what_loads_without_running_code(tmp_path):
    tiny_fit(tmp_path, epochs=1)
    content = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)
    assert content["state"]["epoch"] == 1


@pytest.fixture
def trained(tmp_path):
    out = tmp_path / "run"
    tiny_fit(out, epochs=2)
    return out


def resume_fails(out) -> str:
    with pytest.raises(CheckpointError) as caught:
        tiny_fit(out, resume=True)
    message = str(caught.value)
    assert "\n" not in message and str(out / LAST_CHECKPOINT) in message
    return message


def test_a_crafted_checkpoint_runs_no_code_and_is_refused(trained, tmp_path):
    marker = tmp_path / "marker"
    payload = pickle.dumps({"network": WritesAMarker(marker)}, protocol=2)
    pickle.loads(payload)  # the payload does what it says when simply unpickled …
    assert marker.read_text() == "ran"
    marker.unlink()
    for write in (
        lambda path: path.write_bytes(payload),  # a bare pickle
        lambda path: torch.save({"network": WritesAMarker(marker)}, path),  # torch's zip
    ):
        write(trained / LAST_CHECKPOINT)
        assert "refused unread" in resume_fails(trained)
        assert not marker.exists()  # … but not when resumed


def test_a_truncated_checkpoint_is_refused(trained):
    path = trained / LAST_CHECKPOINT
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "not a readable checkpoint" in resume_fails(trained)


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda c: c["network"]["1.weight"].fill_(float("nan")), "NaN or infinite"),
        (lambda c: c["optimizer"]["state"][0]["exp_avg"].fill_(float("inf")), "NaN or infinite"),
        (lambda c: c["network"].update({"1.weight": torch.zeros(3, 16)}), "has shape (3, 16)"),
        (lambda c: c["network"].pop("3.bias"), "lack 1 parameter(s)"),
        (lambda c: c["optimizer"]["state"][0].update(exp_avg=torch.zeros(2)), "exp_avg"),
        (lambda c: c.update(generator=torch.zeros(3)), "generator"),
        (lambda c: c["state"].update(epoch="2"), "run state"),
        (lambda c: c.pop("optimizer"), "no optimizer"),
    ],
    ids=["nan weights", "inf moments", "shape", "missing", "moment shape", "rng", "state", "keys"],
)
def test_a_checkpoint_that_fails_its_check_is_refused(trained, damage, expected):
    path = trained / LAST_CHECKPOINT
    content = torch.load(path, weights_only=True)
    damage(content)
    torch.save(content, path)
    message = resume_fails(trained)
    assert expected in message and "another --out folder" in message


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def run_folder(tmp_path):
    """A run folder as a shared one looks: its config.yaml naming a tiny image set."""
    data = write_shape_set(tmp_path / "data", n_per_class=4)
    out = tmp_path / "run"
    out.mkdir()
    config = TrainConfig(
        model="base_cyclic", data=str(data), out=str(out), input_size=32, epochs=1,
        batch_size=4, min_per_class=2, workers=1,
    )  # fmt: skip
    config.to_yaml(out / "config.yaml")
    return out


def resume(out):
    return CliRunner().invoke(app, ["train", "--config", str(out / "config.yaml"), "--resume"])


def test_train_resume_from_a_crafted_checkpoint_runs_no_code(run_folder, tmp_path):
    marker = tmp_path / "marker"
    torch.save({"network": WritesAMarker(marker)}, run_folder / LAST_CHECKPOINT)
    result = resume(run_folder)
    assert result.exit_code == 2, result.output
    assert not marker.exists()
    assert one_line(result.output).startswith(f"error: {run_folder / LAST_CHECKPOINT}: holds")
    assert result.output.count("error:") == 1 and "Traceback" not in result.output


def test_train_resume_from_a_truncated_checkpoint_is_one_line(run_folder):
    torch.save({"network": torch.randn(1000)}, run_folder / LAST_CHECKPOINT)
    path = run_folder / LAST_CHECKPOINT
    path.write_bytes(path.read_bytes()[:700])
    result = resume(run_folder)
    assert result.exit_code == 2, result.output
    text = one_line(result.output)
    assert text.startswith(f"error: {path}: not a readable checkpoint"), result.output


def test_a_full_disk_while_training_is_one_line_naming_the_file(run_folder, monkeypatch):
    """The disk fills as the first checkpoint is written: torch.save's own writes fail."""
    real_save = torch.save

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(
        checkpoint_module.torch, "save", lambda obj, handle: real_save(obj, FullDisk(handle))
    )
    (run_folder / "config.yaml").rename(run_folder.parent / "config.yaml")
    run_folder.rmdir()
    result = CliRunner().invoke(app, ["train", "--config", str(run_folder.parent / "config.yaml")])
    assert result.exit_code == 2, result.output
    text = one_line(result.output)
    assert f"error: {run_folder / 'checkpoint_best.pt'}: No space left on device" in text
    assert "Traceback" not in result.output


def test_a_log_that_is_not_the_runs_is_refused_on_resume(trained):
    (trained / "log.csv").write_text('epoch,val_loss\n1,0.5\n"two",0.4,extra,fields\n')
    with pytest.raises(CheckpointError, match=r"log\.csv: not this run.s log") as caught:
        tiny_fit(trained, resume=True)
    assert "\n" not in str(caught.value)
