"""Classification on this machine: decoding in worker processes, the network in this one.

Batches are decoded ahead by a process pool, never more than a few per worker, so memory
stays bounded whatever the number of images; ONNX Runtime runs each decoded batch on all
cores while the workers decode the next ones.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa

from foramflow.bundle.decode import decode_batch
from foramflow.bundle.engine import Engine
from foramflow.classify.decisions import DecisionRule
from foramflow.classify.inference import (
    classify_records,
    readable_paths,
    with_listing_problems,
)
from foramflow.classify.tables import predictions_table
from foramflow.classify.workers import start_worker

AHEAD_PER_WORKER = 3


def run_local(
    chunks: Iterable[tuple[int, pd.DataFrame]],
    *,
    images_dir: Path,
    engine: Engine,
    rule: DecisionRule,
    workers: int,
    batch_size: int,
    on_images: Callable[[int], None] = lambda n: None,
) -> Iterator[tuple[int, pa.Table]]:
    """Yield (chunk index, predictions) for each chunk of records, in order.

    ``workers`` = 0 decodes in this process (no pool).
    """
    if workers == 0:
        for index, records in chunks:
            table = classify_records(records, images_dir, engine, rule, batch_size=batch_size)
            on_images(len(records))
            yield index, table
        return
    spec = engine.bundle.spec
    context = multiprocessing.get_context("spawn")  # never fork a process running ORT threads
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=start_worker, initargs=(os.getpid(),)
    ) as pool:
        pending: deque[tuple[int, pd.DataFrame, bool, Future]] = deque()
        batches = _batches(chunks, batch_size)
        try:
            parts: list[pa.Table] = []
            while True:
                while len(pending) < workers * AHEAD_PER_WORKER:
                    item = next(batches, None)
                    if item is None:
                        break
                    index, part, last = item
                    paths = readable_paths(part, images_dir)
                    pending.append((index, part, last, pool.submit(decode_batch, paths, spec)))
                if not pending:
                    return
                index, part, last, future = pending.popleft()
                batch, errors = future.result()
                errors = with_listing_problems(part, errors)
                parts.append(predictions_table(part, engine.predict(batch), errors, rule))
                on_images(len(part))
                if last:
                    yield index, pa.concat_tables(parts)
                    parts = []
        finally:
            for *_, future in pending:
                future.cancel()


def _batches(
    chunks: Iterable[tuple[int, pd.DataFrame]], batch_size: int
) -> Iterator[tuple[int, pd.DataFrame, bool]]:
    """(chunk index, batch of records, whether it is the chunk's last batch)."""
    for index, records in chunks:
        for start in range(0, len(records), batch_size):
            yield (
                index,
                records.iloc[start : start + batch_size],
                start + batch_size >= len(records),
            )
