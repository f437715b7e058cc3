"""How a bundle's network runs fastest on this machine: precision, threads and batch size,
measured rather than read from the CPU's flags.

Flags say what a processor can compute, not what is fast with this network here (shared
cores, memory bandwidth, the runtime's kernels for these layers). The first classification
of a bundle on a machine times each candidate setting on a batch of the images to classify
and keeps the fastest in the user cache, keyed by the machine and the network; later runs
on the same machine reuse it, and a run on another one (another processor, number of cores
or runtime version) measures again. Only precisions already allowed by their accuracy checks
(:mod:`foramflow.bundle.precision`) are candidates: speed never buys accuracy away.
"""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from foramflow.bundle.engine import Engine, available_cores, cascade_here, resolve_precision
from foramflow.bundle.folder import Bundle
from foramflow.bundle.records import user_cache_root
from foramflow.errors import InvalidInput
from foramflow.io.files import write_json_atomic
from foramflow.io.limits import FileRefused, read_json_object

BATCH_SIZES = (16, 64)
#: Each candidate runs for at least this long (after one untimed batch), and at least
#: :data:`MIN_REPEATS` batches, so that one slow batch does not decide.
MIN_SECONDS = 0.4
MIN_REPEATS = 3
FORMAT = "foramflow-setup/1"


@dataclass(frozen=True)
class Setup:
    """How the network runs: what was chosen, and how (``source``: measured, cached, given)."""

    precision: str
    threads: int
    batch_size: int
    source: str
    images_per_second: float | None = None
    machine: str = ""
    trials: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def machine_id() -> str:
    """A short hash of what decides speed here: the processor, its flags, the cores this
    process may use, and the runtimes' versions."""
    import onnxruntime

    parts = [_cpu_description(), str(available_cores()), f"onnxruntime {onnxruntime.__version__}"]
    try:
        import openvino

        parts.append(f"openvino {openvino.__version__}")
    except ImportError:
        pass
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def setups_root() -> Path:
    """Where the settings measured on each machine are kept, beside the bundles' records."""
    return user_cache_root().parent / "setups"


def _cpu_description() -> str:
    """The processor's model name and flags (Linux), else what the platform says."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags", "Features", "CPU part")
    lines = [line for line in text.splitlines() if line.split(":")[0].strip() in wanted]
    return "\n".join(dict.fromkeys(lines))  # the first processor's, once


def cached_setup(
    bundle: Bundle,
    precisions: Sequence[str],
    *,
    threads: int | None = None,
    batch_size: int | None = None,
    cache_root: Path | None = None,
) -> Setup | None:
    """The setup :func:`choose_setup` kept for the same question on this machine, or None:
    a run asks first, and decodes images to time on only where nothing is kept."""
    precisions = list(dict.fromkeys(precisions))
    return _read_cached(
        _cache_file(cache_root, machine_id(), bundle, precisions, threads, batch_size)
    )


def choose_setup(
    bundle: Bundle,
    precisions: Sequence[str],
    batch: np.ndarray,
    *,
    threads: int | None = None,
    batch_size: int | None = None,
    cache_root: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Setup:
    """The fastest of ``precisions`` (those the accuracy checks allow, preferred first), thread
    counts and batch sizes for ``bundle`` here, timed on ``batch`` (preprocessed images of
    the run). ``threads`` and ``batch_size``, when given, are kept as they are; with one
    precision and both given nothing is timed."""
    precisions = list(dict.fromkeys(precisions))
    if len(precisions) == 1 and threads is not None and batch_size is not None:
        return Setup(precisions[0], threads, batch_size, source="given")
    machine = machine_id()
    path = _cache_file(cache_root, machine, bundle, precisions, threads, batch_size)
    cached = _read_cached(path)
    if cached is not None:
        return cached
    log(f"timing {', '.join(precisions)} on this machine (once per network and machine)")
    trials = _time_candidates(bundle, precisions, batch, threads, batch_size)
    best = max(trials, key=lambda t: t["images_per_second"])
    setup = Setup(
        best["precision"],
        best["threads"],
        best["batch_size"],
        source="measured",
        images_per_second=best["images_per_second"],
        machine=machine,
        trials=trials,
    )
    _write_cached(path, setup)
    return setup


def _time_candidates(
    bundle: Bundle,
    precisions: list[str],
    batch: np.ndarray,
    threads: int | None,
    batch_size: int | None,
) -> list[dict]:
    """Each precision on all cores in the larger batches, then the fastest one's other
    thread counts, then its other batch sizes: a few trials rather than every combination,
    since the precision decides most of the speed."""
    if len(batch) == 0:
        raise InvalidInput("no readable image to time the network on")
    thread_counts = [threads] if threads else sorted({1, available_cores()}, reverse=True)
    sizes = [batch_size] if batch_size else sorted(BATCH_SIZES, reverse=True)
    engines: dict[tuple[str, int], Engine] = {}
    trials: list[dict] = []

    def trial(precision: str, count: int, size: int) -> None:
        if (precision, count) not in engines:
            engines[precision, count] = Engine(bundle, precision=precision, threads=count)
        images = np.resize(batch, (size, *batch.shape[1:])).astype(np.float32)
        rate = _images_per_second(engines[precision, count], images)
        trials.append(
            {
                "precision": precision,
                "threads": count,
                "batch_size": size,
                "images_per_second": round(rate, 1),
            }
        )

    def best() -> dict:
        return max(trials, key=lambda t: t["images_per_second"])

    for precision in precisions:
        trial(precision, thread_counts[0], sizes[0])
    for count in thread_counts[1:]:
        trial(best()["precision"], count, sizes[0])
    for size in sizes[1:]:
        trial(best()["precision"], best()["threads"], size)
    return trials


def _images_per_second(engine: Engine, images: np.ndarray) -> float:
    """The median rate of timed batches, after one untimed batch (first-call set-up)."""
    engine.predict(images)
    rates, started = [], time.perf_counter()
    while len(rates) < MIN_REPEATS or time.perf_counter() - started < MIN_SECONDS:
        tick = time.perf_counter()
        engine.predict(images)
        rates.append(len(images) / max(time.perf_counter() - tick, 1e-9))
    return statistics.median(rates)


def _cache_file(
    root: Path | None,
    machine: str,
    bundle: Bundle,
    precisions: list[str],
    threads: int | None,
    batch_size: int | None,
) -> Path:
    """One file per machine, network and question asked (candidates and settings given)."""
    hashes = [_network_hashes(bundle, p) for p in precisions]
    question = json.dumps([precisions, hashes, threads, batch_size])
    key = hashlib.sha256(question.encode()).hexdigest()[:16]
    return (root or setups_root()) / machine / f"{key}.json"


def _network_hashes(bundle: Bundle, precision: str) -> list[str]:
    """The networks ``precision`` runs: the cascade runs two."""
    files = [resolve_precision(bundle, precision)[1]]
    if precision == "cascade":
        files.append(cascade_here(bundle).one_view_file)
    return [bundle.network(file).hash[:16] for file in files]


def _read_cached(path: Path) -> Setup | None:
    """The setup kept at ``path``, or None where there is none or it cannot be read."""
    if not path.is_file():
        return None
    try:
        data = read_json_object(path, what="setup")
        if data.pop("format", None) != FORMAT:
            return None
        setup = Setup(**{**data, "source": "cached"})
    except (FileRefused, TypeError):
        return None
    if setup.threads < 1 or setup.batch_size < 1:
        return None
    return setup


def _write_cached(path: Path, setup: Setup) -> None:
    """Keep ``setup`` for the next run; a cache that cannot be written costs only a new
    measurement next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"format": FORMAT, **setup.to_dict()})
    except OSError:
        pass
