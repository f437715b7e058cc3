"""Train in fp32 or under bf16 autocast: on a CPU, chosen by a short timed trial.

A processor's flags say whether it computes bf16, not whether a training step is faster
with it: on some processors with native bf16 the two run alike. So where ``--precision
auto`` meets a CPU with bf16, the trainer times a few steps of the network it is about to
train, on a batch of the run's images, in each precision, and bf16 wins only when clearly
faster (fp32 is exact). The choice is kept in the user cache per machine, network, input
size and batch size, so that the next run on this machine does not time again; another
machine (see :func:`~foramflow.bundle.tuning.machine_id`) times again. ``--precision fp32``
or ``bf16`` decides without timing, and so does a GPU (bf16 where it is supported).

Two stages choose apart, as their speeds differ: the frozen network's features of a
transfer or top run (ONNX Runtime in fp32, PyTorch under bf16 autocast), and the epochs.
The choices are written into the run's ``config.yaml`` under ``precision_choice``, a
mapping per stage: ``precision`` (fp32 or bf16), ``source`` (measured, cached, given, not
possible, gpu; flags for a resumed run that started without a record) and, when timed,
what was timed and each candidate's images per second.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from foramflow.bundle.engine import cpu_has_bf16
from foramflow.bundle.tuning import machine_id, setups_root
from foramflow.io.files import write_json_atomic
from foramflow.io.limits import FileRefused, read_json_object
from foramflow.training.device import use_bf16

#: bf16 is taken only when its rate is at least this many times fp32's.
MARGIN = 1.10
#: Each candidate: one untimed step, then at least MIN_STEPS timed ones, more while the
#: trial has taken under MIN_SECONDS a candidate (a fast step is timed often enough to be
#: told from noise), at most MAX_STEPS.
MIN_STEPS, MIN_SECONDS, MAX_STEPS = 3, 0.5, 20
PRECISIONS = ("fp32", "bf16")
#: The stages that choose their precision: the frozen network's features (transfer and
#: top runs, computed once) and the training epochs.
FEATURES, EPOCHS = "features", "epochs"
FORMAT = "foramflow-training-precision/1"

#: One step of a candidate; returns the number of images it processed.
Step = Callable[[], int]


def fixed_choice(precision: str, device: torch.device) -> dict | None:
    """The choice that needs no trial, or None where a trial decides (auto on a CPU with bf16)."""
    if precision in PRECISIONS:
        return {"precision": precision, "source": "given"}
    if device.type != "cpu":
        return {"precision": "bf16" if use_bf16(precision, device) else "fp32", "source": "gpu"}
    if not cpu_has_bf16():
        return {"precision": "fp32", "source": "not possible"}
    return None


def measured_choice(
    key: dict,
    candidates: Callable[[], dict[str, Step]],
    *,
    timed: str,
    cache_root: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """The precision kept for ``key`` (model, input size, batch size …) on this machine, or
    else timed now on the steps ``candidates()`` builds (one per precision) and kept."""
    machine = machine_id()
    path = _cache_file(cache_root, machine, {**key, "timed": timed})
    cached = _read_cached(path)
    if cached is not None:
        return cached
    log(f"Timing fp32 and bf16 on this machine: {timed} (once per machine)")
    started = time.perf_counter()
    with _rng_kept():
        rates = measure_rates(candidates())
    faster = rates["bf16"] >= MARGIN * rates["fp32"]
    choice = {
        "precision": "bf16" if faster else "fp32",
        "source": "measured",
        "timed": timed,
        "batch_size": key.get("batch_size"),
        "images_per_second": rates,
        "trial_seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
    }
    _write_cached(path, choice)
    return choice


def measure_rates(steps: dict[str, Step]) -> dict[str, float]:
    """Images per second of each step: the median of its timed runs, after an untimed one.
    The candidates take turns, so that a load that comes and goes (a shared machine) weighs
    on each alike."""
    for step in steps.values():
        step()
    per_step: dict[str, list[float]] = {name: [] for name in steps}
    started = time.perf_counter()
    while True:
        for name, step in steps.items():
            tick = time.perf_counter()
            n = step()
            per_step[name].append(n / max(time.perf_counter() - tick, 1e-9))
        done = min(len(rates) for rates in per_step.values())
        enough_time = time.perf_counter() - started >= MIN_SECONDS * len(steps)
        if done >= MAX_STEPS or (done >= MIN_STEPS and enough_time):
            break
    return {name: round(statistics.median(rates), 1) for name, rates in per_step.items()}


def training_steps(
    module: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> dict[str, Step]:
    """A training step (forward, backward, optimizer step) in each precision, on copies of
    ``module`` and ``optimizer``: the trial leaves the run's weights and moments as they are."""
    module, optimizer = deepcopy((module, optimizer))

    def step(bf16: bool) -> int:
        module.train()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = module(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(x)

    return {name: partial(step, name == "bf16") for name in PRECISIONS}


def describe(stage: str, choice: dict) -> str:
    """One line for the run's log."""
    rates = choice.get("images_per_second")
    text = f"{stage.capitalize()} in {choice['precision']} ({choice['source']}"
    if rates:
        text += ": " + ", ".join(f"{name} {rate:.0f} images/s" for name, rate in rates.items())
    return text + ")"


@contextmanager
def _rng_kept() -> Iterator[None]:
    """Dropout in the trial draws from torch's generator: give it back as it was, so that a
    run is the same whether its precision was timed or read from the cache."""
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


def _cache_file(root: Path | None, machine: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return (root or setups_root() / "training") / machine / f"{digest}.json"


def _read_cached(path: Path) -> dict | None:
    """The choice kept at ``path``, or None where there is none or it cannot be read."""
    if not path.is_file():
        return None
    try:
        data = read_json_object(path, what="training precision")
    except FileRefused:
        return None
    if data.pop("format", None) != FORMAT or data.get("precision") not in PRECISIONS:
        return None
    return {**data, "source": "cached"}


def _write_cached(path: Path, choice: dict) -> None:
    """Keep ``choice`` for the next run; a cache that cannot be written costs only a new
    trial next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"format": FORMAT, **choice})
    except OSError:
        pass
