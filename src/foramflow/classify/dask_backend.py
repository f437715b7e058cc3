"""Classification on a Dask distributed cluster: one task per chunk of images.

Each task decodes its images and runs the network on its worker (one ONNX Runtime thread per
task; start workers with one process per core). The results come back to this process, which
writes the chunks, so resuming works exactly as for a local run. Workers must see IMAGES_DIR
and the bundle at the same paths, and have foramflow installed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa

from foramflow.bundle import Bundle
from foramflow.bundle.decisions import DecisionRule
from foramflow.bundle.engine import Engine
from foramflow.classify.inference import classify_records

TASKS_PER_THREAD = 2


@contextmanager
def connect(scheduler):
    """A Client for a scheduler address, a cluster object (LocalCluster, SLURMCluster, …),
    or an existing Client (left open afterwards)."""
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    client = Client(scheduler)
    try:
        yield client
    finally:
        client.close()


def run_dask(
    chunks: Iterable[tuple[int, pd.DataFrame]],
    *,
    client,
    bundle_path: Path,
    bundle_hash: str,
    precision: str,
    images_dir: Path,
    rule: DecisionRule,
    batch_size: int,
    precision_records: dict | None = None,
    on_images: Callable[[int], None] = lambda n: None,
) -> Iterator[tuple[int, pa.Table]]:
    """Yield (chunk index, predictions) as chunks finish on the cluster (in any order).

    ``precision_records`` are the bundle's precision records (bf16, int8) as this process sees them,
    also those kept outside the bundle (see :mod:`foramflow.bundle.records`).
    At most a couple of tasks per worker thread are in flight, so that neither this process
    nor the scheduler holds more than a few chunks at a time.
    """
    from distributed import as_completed

    threads = sum(client.nthreads().values()) or 1
    todo = iter(chunks)
    running = as_completed()
    indices = {}

    def submit_next() -> bool:
        item = next(todo, None)
        if item is None:
            return False
        index, records = item
        future = client.submit(
            classify_chunk,
            str(bundle_path),
            bundle_hash,
            json.dumps(precision_records or {}, sort_keys=True),
            precision,
            str(images_dir),
            records,
            rule,
            batch_size,
            pure=False,
        )
        indices[future.key] = (index, len(records))
        running.add(future)
        return True

    for _ in range(max(2, threads * TASKS_PER_THREAD)):
        if not submit_next():
            break
    try:
        for future in running:
            index, n = indices.pop(future.key)
            table = future.result()
            future.release()
            on_images(n)
            yield index, table
            submit_next()
    finally:
        for future in running.futures:
            future.cancel()


def classify_chunk(
    bundle_path: str,
    bundle_hash: str,
    precision_records: str,
    precision: str,
    images_dir: str,
    records: pd.DataFrame,
    rule: DecisionRule,
    batch_size: int,
) -> pa.Table:
    """Task run on a worker: predictions for one chunk of records."""
    cuts = tuple(rule.per_class.tolist())
    engine = _engine(bundle_path, bundle_hash, precision_records, precision, cuts)
    return classify_records(records, Path(images_dir), engine, rule, batch_size=batch_size)


@functools.lru_cache(maxsize=2)
def _engine(
    bundle_path: str, bundle_hash: str, precision_records: str, precision: str, cuts: tuple
) -> Engine:
    """One engine per worker process and bundle (the hash keys the cache, so a changed
    bundle is reloaded); ``precision_records`` is JSON, added to the bundle's description;
    ``cuts`` are the decision rule's thresholds per class."""
    bundle = Bundle.load(bundle_path)
    bundle.attach(**json.loads(precision_records))
    return Engine(bundle, precision=precision, threads=1, cuts=cuts)
