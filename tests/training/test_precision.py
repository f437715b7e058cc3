"""--precision auto on a CPU: fp32 or bf16 chosen by a timed trial, kept per machine, and
recorded in the run's config.yaml."""

import pytest
import torch
import yaml

import foramflow.training.precision as precision
from foramflow.training.config import TrainConfig
from foramflow.training.full import FullTrainer
from foramflow.training.run_folder import LAST_CHECKPOINT
from foramflow.training.top import TopTrainer
from foramflow.training.transfer import TransferTrainer
from image_sets import write_shape_set

real_measure_rates = precision.measure_rates


class Stopped(Exception):
    """Raised where the epochs would begin: the precision is settled by then."""


class Trial:
    """Stands for the timing: counts the trials and answers fixed rates."""

    def __init__(self, fp32: float = 100.0, bf16: float = 200.0):
        self.rates = {"fp32": fp32, "bf16": bf16}
        self.calls = 0

    def __call__(self, steps):
        assert set(steps) == {"fp32", "bf16"}
        self.calls += 1
        return dict(self.rates)


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A CPU with bf16, a trial that counts its calls, and a user cache of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "machine_id", lambda: "machine-a")
    trial = Trial()
    monkeypatch.setattr(precision, "measure_rates", trial)
    monkeypatch.setattr(FullTrainer, "train_epochs", stop)
    return trial


def stop(*args, **kwargs):
    raise Stopped


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_shape_set(tmp_path_factory.mktemp("shapes"), n_per_class=12)


def start(data, out, *, resume=False, **changes) -> FullTrainer:
    """A base_cyclic run up to its first epoch; its trainer."""
    settings = {
        "model": "base_cyclic",
        "data": str(data),
        "out": str(out),
        "input_size": 32,
        "epochs": 1,
        "batch_size": 8,
        "min_per_class": 5,
        "workers": 1,
    }
    config = TrainConfig(**{**settings, **changes})
    trainer = FullTrainer(config, resume=resume)
    with pytest.raises(Stopped):
        trainer.run()
    return trainer


def recorded(out, stage="epochs") -> dict:
    return yaml.safe_load((out / "config.yaml").read_text())["precision_choice"][stage]


def test_the_measured_choice_is_recorded_and_reused_on_this_machine(machine, data, tmp_path):
    first = start(data, tmp_path / "first")
    assert first.bf16 and machine.calls == 1
    record = recorded(tmp_path / "first")
    assert record["precision"] == "bf16" and record["source"] == "measured"
    assert record["images_per_second"] == {"fp32": 100.0, "bf16": 200.0}
    assert record["batch_size"] == 8 and "training steps" in record["timed"]
    assert TrainConfig.from_yaml(tmp_path / "first" / "config.yaml") == first.config
    assert set(
        yaml.safe_load((tmp_path / "first" / "config.yaml").read_text())["precision_choice"]
    ) == {"epochs"}  # a full network has no frozen features

    second = start(data, tmp_path / "second")
    assert second.bf16 and machine.calls == 1  # not timed again
    assert recorded(tmp_path / "second")["source"] == "cached"
    assert recorded(tmp_path / "second")["images_per_second"] == record["images_per_second"]


def test_another_machine_or_another_batch_size_times_again(machine, data, tmp_path, monkeypatch):
    start(data, tmp_path / "first")
    start(data, tmp_path / "other-batch", batch_size=4)
    assert machine.calls == 2
    monkeypatch.setattr(precision, "machine_id", lambda: "machine-b")
    machine.rates = {"fp32": 100.0, "bf16": 105.0}  # bf16 not clearly faster there
    other = start(data, tmp_path / "other-machine")
    assert machine.calls == 3 and not other.bf16
    assert recorded(tmp_path / "other-machine")["precision"] == "fp32"


@pytest.mark.parametrize("given", ["fp32", "bf16"])
def test_a_precision_given_is_taken_without_timing(machine, data, tmp_path, given):
    trainer = start(data, tmp_path / "run", precision=given)
    assert trainer.bf16 == (given == "bf16") and machine.calls == 0
    assert recorded(tmp_path / "run") == {"precision": given, "source": "given"}


def test_without_bf16_the_cpu_trains_in_fp32_without_timing(machine, data, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    trainer = start(data, tmp_path / "run")
    assert not trainer.bf16 and machine.calls == 0
    assert recorded(tmp_path / "run") == {"precision": "fp32", "source": "not possible"}


def test_a_resumed_run_keeps_its_precision_untimed(machine, data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    start(data, out)
    record = recorded(out)
    (out / LAST_CHECKPOINT).write_bytes(b"")  # the epochs (stopped here) would read it
    monkeypatch.setattr(precision, "machine_id", lambda: "machine-b")  # would time again
    machine.rates = {"fp32": 300.0, "bf16": 100.0}
    config = TrainConfig.from_yaml(out / "config.yaml")
    resumed = start(data, out, resume=True, **config.model_dump(exclude={"data", "out"}))
    assert resumed.bf16 and machine.calls == 1
    assert recorded(out) == record


def test_an_unreadable_cache_file_is_timed_again(machine, tmp_path):
    key = {"model": "m", "batch_size": 8}
    steps = {"fp32": None, "bf16": None}.copy
    first = precision.measured_choice(key, steps, timed="steps")
    (cached,) = (tmp_path / "user-cache" / "foramflow" / "setups" / "training").rglob("*.json")
    cached.write_text("{not json")
    again = precision.measured_choice(key, steps, timed="steps")
    assert machine.calls == 2 and again["source"] == "measured" == first["source"]
    assert precision.measured_choice(key, steps, timed="steps")["source"] == "cached"


def test_the_trial_leaves_the_network_its_optimizer_and_the_random_state_alone():
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)
    )
    optimizer = torch.optim.Adam(network.parameters())
    before = {k: v.clone() for k, v in network.state_dict().items()}
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    rng = torch.get_rng_state()
    with precision._rng_kept():
        rates = precision.measure_rates(precision.training_steps(network, optimizer, x, y))
    assert set(rates) == {"fp32", "bf16"} and min(rates.values()) > 0
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert not optimizer.state  # no moments: the copy took the steps
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize(
    ("model", "trainer", "where_rows_begin", "stages"),
    [
        ("efficientnet_lite0_top", TopTrainer, "_rows", ["features", "epochs"]),
        ("efficientnet_lite0_tl", TransferTrainer, "_features", ["features"]),
    ],
)
def test_top_and_transfer_runs_time_their_frozen_features_and_their_epochs_apart(
    machine, data, tmp_path, monkeypatch, model, trainer, where_rows_begin, stages
):
    timed = []

    def real_trial(steps):
        timed.append(real_measure_rates(steps))
        return timed[-1]

    monkeypatch.setattr(precision, "measure_rates", real_trial)
    monkeypatch.setattr(trainer, where_rows_begin, stop)
    config = TrainConfig(
        model=model,
        data=str(data),
        out=str(tmp_path / "run"),
        input_size=32,
        batch_size=8,
        min_per_class=5,
        workers=1,
        feature_cache=str(tmp_path / "cache"),
    )
    run = trainer(config)
    with pytest.raises(Stopped):
        run.run()
    assert len(timed) == len(stages)
    for stage, rates in zip(stages, timed):
        assert set(rates) == {"fp32", "bf16"} and min(rates.values()) > 0
        assert recorded(tmp_path / "run", stage)["images_per_second"] == rates
    faster = timed[0]["bf16"] >= precision.MARGIN * timed[0]["fp32"]
    assert run.features_bf16 == faster
    assert set(run._extractors) == {"fp32", "bf16"}  # kept: the winner computes the features


def test_the_candidates_take_turns_so_that_a_passing_load_weighs_on_both():
    calls = []
    steps = {name: (lambda name=name: calls.append(name) or 1) for name in ("fp32", "bf16")}
    rates = real_measure_rates(steps)
    assert calls[:6] == ["fp32", "bf16"] * 3  # one untimed step each, then turn about
    assert calls.count("fp32") == calls.count("bf16") == precision.MAX_STEPS + 1
    assert set(rates) == {"fp32", "bf16"}
