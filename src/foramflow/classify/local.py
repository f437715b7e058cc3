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
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pandas as pd
import pyarrow as pa

from foramflow.bundle.decisions import DecisionRule
from foramflow.bundle.decode import decode_batch
from foramflow.bundle.engine import Engine
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
    log: Callable[[str], None] = lambda message: None,
) -> Iterator[tuple[int, pa.Table]]:
    """Yield (chunk index, predictions) for each chunk of records, in order.

    ``workers`` = 0 decodes in this process (no pool). A pool that cannot start, or that
    breaks, is said in one line to ``log`` and the run carries on decoding in this process.
    """
    if workers == 0:
        for index, records in chunks:
            table = classify_records(records, images_dir, engine, rule, batch_size=batch_size)
            on_images(len(records))
            yield index, table
        return
    with _Decoder(workers, engine.bundle.spec, log) as decoder:
        pending: deque[tuple[int, pd.DataFrame, bool, list[str], Future]] = deque()
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
                    pending.append((index, part, last, paths, decoder.submit(paths)))
                if not pending:
                    return
                index, part, last, paths, future = pending.popleft()
                batch, errors = decoder.result(future, paths)
                errors = with_listing_problems(part, errors)
                parts.append(predictions_table(part, engine.predict(batch), errors, rule))
                on_images(len(part))
                if last:
                    yield index, pa.concat_tables(parts)
                    parts = []
        finally:
            for *_, future in pending:
                future.cancel()


# What a pool of processes raises when it cannot start (no semaphores, no way to start a
# process, too many processes); a pool that has lost a worker fails its futures with
# BrokenProcessPool. An error raised by decoding itself is not one of these.
_POOL_FAILURES = (OSError, ImportError, NotImplementedError, BrokenProcessPool)


class _Decoder:
    """Decodes batches in a pool of worker processes, or in this process once the pool
    cannot start or has broken (said once, to ``log``)."""

    def __init__(self, workers: int, spec, log: Callable[[str], None]):
        self.spec, self.log = spec, log
        self.pool: ProcessPoolExecutor | None = None
        context = multiprocessing.get_context("spawn")  # never fork a process running ORT
        try:
            self.pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=start_worker, initargs=(os.getpid(),)
            )
        except _POOL_FAILURES as err:
            self._give_up("cannot start", err)

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, paths: list[str]) -> Future:
        """A future of (batch, errors) for ``paths``."""
        if self.pool is not None:
            try:
                return self.pool.submit(decode_batch, paths, self.spec)
            except _POOL_FAILURES as err:
                self._give_up("cannot start", err)
        done: Future = Future()
        done.set_result(None)  # decoded when its result is asked for, in order
        return done

    def result(self, future: Future, paths: list[str]) -> tuple:
        """(batch, errors) for ``paths``: the pool's, or decoded here."""
        try:
            decoded = future.result()
        except (BrokenProcessPool, CancelledError) as err:  # cancelled: by giving the pool up
            self._give_up("stopped", err)
            decoded = None
        return decode_batch(paths, self.spec) if decoded is None else decoded

    def _give_up(self, what: str, err: BaseException) -> None:
        if self.pool is None and what == "stopped":
            return
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        self.log(
            f"warning: the decoding processes {what} ({type(err).__name__}: {reason}); "
            "decoding in this process instead, more slowly"
        )


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
