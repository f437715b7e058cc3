"""Precision, threads and batch size are measured on the machine at hand, kept per machine
and network, reused, measured again on another machine, and never override a given choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foramflow.bundle import Bundle, tuning
from foramflow.classify import runner
from foramflow.classify.runner import classify_folder


class Clock:
    """Rates by setting, and a count of the batches timed."""

    def __init__(self, fastest: dict):
        self.fastest, self.timed = fastest, 0

    def __call__(self, engine, images) -> float:
        self.timed += 1
        setting = {"precision": engine.precision, "threads": engine.threads}
        setting["batch_size"] = len(images)
        return 100.0 + 50.0 * sum(setting[k] == v for k, v in self.fastest.items())


@pytest.fixture
def batch():
    return np.full((5, 1, 16, 16), 0.5, np.float32)


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr("foramflow.bundle.tuning.available_cores", lambda: 2)


def test_the_fastest_setting_is_chosen_and_kept_for_the_next_run(
    bundle, batch, monkeypatch, two_cores
):
    clock = Clock({"threads": 1, "batch_size": 16})
    monkeypatch.setattr(tuning, "_images_per_second", clock)
    first = tuning.choose_setup(Bundle.load(bundle), ["fp32"], batch)
    assert (first.threads, first.batch_size, first.source) == (1, 16, "measured")
    # 2 threads in batches of 64, then 1 thread, then 1 thread in batches of 16
    assert [(t["threads"], t["batch_size"]) for t in first.trials] == [(2, 64), (1, 64), (1, 16)]
    assert clock.timed == 3
    assert first.images_per_second == 200.0

    again = tuning.choose_setup(Bundle.load(bundle), ["fp32"], batch)
    assert (again.threads, again.batch_size, again.source) == (1, 16, "cached")
    assert again.trials == first.trials
    assert clock.timed == 3  # nothing timed again


def test_a_given_setting_is_honoured(bundle, batch, monkeypatch, two_cores):
    clock = Clock({"threads": 1, "batch_size": 16})
    monkeypatch.setattr(tuning, "_images_per_second", clock)
    given = tuning.choose_setup(Bundle.load(bundle), ["fp32"], batch, threads=2, batch_size=64)
    assert (given.threads, given.batch_size, given.source) == (2, 64, "given")
    assert clock.timed == 0

    threads_given = tuning.choose_setup(Bundle.load(bundle), ["fp32"], batch, threads=2)
    assert threads_given.threads == 2 and threads_given.batch_size == 16
    assert {t["threads"] for t in threads_given.trials} == {2}


def test_another_machine_measures_again(bundle, batch, monkeypatch, two_cores):
    clock = Clock({"threads": 2, "batch_size": 64})
    monkeypatch.setattr(tuning, "_images_per_second", clock)
    here = tuning.choose_setup(Bundle.load(bundle), ["fp32"], batch)
    monkeypatch.setattr(tuning, "machine_id", lambda: "another-machine")
    monkeypatch.setattr(tuning, "_images_per_second", Clock({"threads": 1, "batch_size": 16}))
    there = tuning.choose_setup(Bundle.load(bundle), ["fp32"], batch)
    assert (here.threads, here.batch_size) == (2, 64)
    assert (there.threads, there.batch_size, there.source) == (1, 16, "measured")
    assert there.machine == "another-machine"


def test_the_machine_id_changes_with_the_cores(monkeypatch):
    first = tuning.machine_id()
    monkeypatch.setattr("foramflow.bundle.tuning.available_cores", lambda: 97)
    assert tuning.machine_id() != first


def test_a_reduced_precision_is_taken_only_where_it_is_faster(bundle, batch, monkeypatch):
    slow_int8 = Clock({"precision": "fp32"})
    monkeypatch.setattr(tuning, "_images_per_second", slow_int8)
    monkeypatch.setattr(tuning, "_cache_file", lambda *args: bundle.parent / "setup.json")
    monkeypatch.setattr(tuning.Engine, "__init__", _fake_engine_init)
    setup = tuning.choose_setup(Bundle.load(bundle), ["int8", "fp32"], batch)
    assert setup.precision == "fp32"
    assert {t["precision"] for t in setup.trials} == {"int8", "fp32"}


def _fake_engine_init(self, bundle, *, precision, threads, **_):
    self.precision, self.threads = precision, threads


def test_an_unreadable_cache_file_is_measured_again(bundle, batch, monkeypatch):
    monkeypatch.setattr(tuning, "_images_per_second", Clock({"threads": 1}))
    first = tuning.choose_setup(Bundle.load(bundle), ["fp32"], batch)
    (cached,) = (p for p in (bundle.parent / "cache").rglob("*.json") if "setups" in str(p))
    cached.write_text("{not json")
    again = tuning.choose_setup(Bundle.load(bundle), ["fp32"], batch)
    assert again.source == "measured" and again.threads == first.threads
    assert json.loads(cached.read_text())["source"] == "measured"  # written afresh


def test_classify_records_the_setup_and_reuses_it(bundle, tree, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "_images_per_second", Clock({"threads": 1, "batch_size": 16}))
    first = classify_folder(bundle, tree, tmp_path / "one", workers=0)
    assert first.run.setup["source"] == "measured"
    assert first.run.setup["batch_size"] == 16 and first.run.setup["threads"] == 1
    run_json = json.loads((tmp_path / "one" / "run.json").read_text())
    assert run_json["setup"]["trials"] == first.run.setup["trials"]
    timing_batches, decode = [], runner.decode_batch
    monkeypatch.setattr(runner, "decode_batch", lambda *a: timing_batches.append(a) or decode(*a))
    second = classify_folder(bundle, tree, tmp_path / "two", workers=0)
    assert second.run.setup["source"] == "cached"
    assert not timing_batches  # a kept setup: no images decoded to time on
    forced = classify_folder(bundle, tree, tmp_path / "three", workers=0, threads=2, batch_size=8)
    assert forced.run.setup["source"] == "given"
    assert (forced.run.setup["threads"], forced.run.setup["batch_size"]) == (2, 8)
    assert first.counts.equals(forced.counts)
