"""Decoding on this machine carries on in one process when its pool cannot start or breaks,
and says so in one line."""

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pandas as pd
import pytest

from foramflow.classify.runner import classify_folder
from foramflow.progress import Recorded


class CannotStart:
    """A pool that fails as one does where no semaphores or processes can be made."""

    def __init__(self, *args, **kwargs):
        raise OSError(38, "Function not implemented")


class BreaksAtOnce:
    """A pool whose workers die: every future fails as a broken pool's do."""

    def __init__(self, *args, **kwargs):
        self.shut = False

    def submit(self, *args, **kwargs):
        future = Future()
        future.set_exception(BrokenProcessPool("A child process terminated abruptly"))
        return future

    def shutdown(self, *args, **kwargs):
        self.shut = True


class CannotSpawn(BreaksAtOnce):
    """A pool made, whose first worker cannot be spawned (processes start on submit)."""

    def submit(self, *args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")


@pytest.mark.parametrize(
    ("pool", "said"),
    [
        (CannotStart, "cannot start (OSError: [Errno 38] Function not implemented)"),
        (
            CannotSpawn,
            "cannot start (BlockingIOError: [Errno 11] Resource temporarily unavailable)",
        ),
        (BreaksAtOnce, "stopped (BrokenProcessPool: A child process terminated abruptly)"),
    ],
)
def test_a_pool_that_cannot_run_leaves_decoding_to_this_process(
    kit, bundle, tree, tmp_path, monkeypatch, pool, said
):
    reference = classify_folder(bundle, tree, tmp_path / "ref", workers=0)
    monkeypatch.setattr("foramflow.classify.local.ProcessPoolExecutor", pool)
    progress = Recorded()
    messages = progress.messages
    result = classify_folder(
        bundle, tree, tmp_path / "out", workers=2, batch_size=2, progress=progress
    )
    pd.testing.assert_frame_equal(result.counts, reference.counts)
    warnings = [m for m in messages if "decoding processes" in m]
    assert warnings == [
        f"warning: the decoding processes {said}; decoding in this process instead, more slowly"
    ]
