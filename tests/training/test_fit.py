"""The one fit loop: the batch rule and the ALRS stop, alone and under both trainers."""

import pandas as pd
import pytest
import torch
from torch import nn

import foramflow.training.fit as fit_module
import foramflow.training.full as full
import foramflow.training.schedule as schedule
import foramflow.training.transfer as transfer
from foramflow.models.registry import get_entry
from foramflow.training.config import TrainConfig
from foramflow.training.fit import Batches, FitSettings, fit
from foramflow.training.trainers import TRAINERS
from image_sets import write_shape_set


class BatchSizes:
    """Stands in for torch.nn.functional inside the fit loop and notes every batch size."""

    def __init__(self):
        self.sizes = []

    def cross_entropy(self, logits, target, **kwargs):
        self.sizes.append(len(target))
        return torch.nn.functional.cross_entropy(logits, target, **kwargs)


@pytest.fixture
def batch_sizes(monkeypatch):
    recorder = BatchSizes()
    monkeypatch.setattr(fit_module, "F", recorder)
    return recorder


@pytest.fixture
def loss_never_falls(monkeypatch):
    """ALRS's test always says the loss has stopped falling: a drop at every window."""
    monkeypatch.setattr(schedule, "probability_decreasing", lambda losses: 0.0)


def test_fit_drops_the_ragged_batch_and_stops_after_the_last_alrs_drop(
    tmp_path, batch_sizes, loss_never_falls
):
    x, y = torch.randn(37, 4), torch.arange(37) % 2
    module = nn.Linear(4, 2)
    batches = Batches(module=module, train_x=x, train_y=y, validate=lambda m: (1.0, 0.5))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    settings = FitSettings(batch_size=8, seed=0, alrs_window_epochs=1, alrs_drops=2)

    state = fit(batches, optimizer, settings, out=tmp_path)

    # 37 // 8 = 4 full batches an epoch; window of 4 batches; two drops: 8 batches, 2 epochs
    assert batch_sizes.sizes == [8] * 8
    assert state["epoch"] == 2 and state["stopped"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # the stop does not drop
    log = pd.read_csv(tmp_path / "log.csv")
    assert log["alrs_drops"].tolist() == [1, 2]


def test_the_log_shows_the_rate_learning_rate_sets_when_groups_run_at_fractions_of_it(
    tmp_path, loss_never_falls
):
    x, y = torch.randn(16, 4), torch.arange(16) % 2
    backbone, tail = nn.Linear(4, 4), nn.Linear(4, 2)
    module = nn.Sequential(backbone, tail)
    batches = Batches(module=module, train_x=x, train_y=y, validate=lambda m: (1.0, 0.5))
    groups = [{"params": backbone.parameters(), "lr": 0.02}, {"params": tail.parameters()}]
    optimizer = torch.optim.SGD(groups, lr=0.1)
    settings = FitSettings(batch_size=8, seed=0, alrs_window_epochs=1, alrs_drops=2)

    fit(batches, optimizer, settings, out=tmp_path)

    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # halved once
    log = pd.read_csv(tmp_path / "log.csv")
    assert log["learning_rate"].iloc[-1] == pytest.approx(0.05)  # the tail's, not 0.01


def no_export(*args, out, **kwargs):
    return out / "report.html"


@pytest.mark.parametrize("model", ["base_cyclic", "efficientnet_lite0_tl"])
def test_full_and_transfer_runs_share_the_batch_rule_and_the_alrs_stop(
    tmp_path_factory, model, batch_sizes, loss_never_falls, monkeypatch
):
    monkeypatch.setattr(full, "export_and_evaluate", no_export)
    monkeypatch.setattr(transfer, "export_and_evaluate", no_export)
    monkeypatch.setattr(transfer, "ReferenceSet", lambda **kwargs: type("R", (), {
        "save": lambda self, path: None})())  # fmt: skip
    monkeypatch.setattr(transfer, "update_bundle_meta", lambda *a, **k: None)
    root = tmp_path_factory.mktemp(model)
    data = write_shape_set(root / "data", n_per_class=17, size=32)
    config = TrainConfig(
        data=str(data),
        out=str(root / "run"),
        model=model,
        input_size=32,
        batch_size=16,
        min_per_class=10,
        schedule="alrs",  # the paper's; transfer models default to cosine
        epochs=None,
        alrs_window_epochs=1,
        alrs_drops=2,
        workers=1,
        precision="fp32",
        feature_cache=str(root / "cache"),
    )
    TRAINERS[get_entry(model).kind](config).run()

    n_train = (pd.read_csv(root / "run" / "split.csv")["part"] == "train").sum()
    per_epoch = n_train // 16
    assert n_train % 16  # a ragged last batch exists, and is dropped
    window = max(3, per_epoch)
    assert batch_sizes.sizes == [16] * (2 * window)
    log = pd.read_csv(root / "run" / "log.csv")
    assert log["alrs_drops"].iloc[-1] == 2
    assert len(log) == -(-2 * window // per_epoch)
