"""The bad-bundle corpus (tests/bad_bundles.py) through predict, evaluate, calibrate,
classify, ensemble and abundance, each as a fresh process as a user runs it.

Every command meets every hostile file at least once in a quick run; the other pairs are
marked slow. Each hostile file is refused in one ``error:`` line naming it, or, where the
command can go on without it (abundance without a correction), set aside with a line naming
it and exit 0; never a traceback. The memory guard stops a decompression bomb from taking
the machine down; benchmarks/bench_bad_inputs.py measures the peaks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bad_bundles import QUICK, case_names, judge, make_bad_bundles
from bad_inputs import run_command

MEMORY_GUARD_BYTES = int(os.environ.get("FORAMFLOW_CORPUS_GUARD_MB", "3072")) * 2**20


@pytest.fixture(scope="module")
def bad_bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {case.name: case for case in make_bad_bundles(root)}


@pytest.mark.parametrize(
    "name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in case_names()]
)
def test_a_hostile_file_is_refused_or_set_aside_in_one_line(bad_bundles, name):
    case = bad_bundles[name]
    out = Path(case.args[case.args.index("--out") + 1]) if "--out" in case.args else Path()
    run = run_command(
        case.command, case.args, out, timeout_s=120, memory_guard_bytes=MEMORY_GUARD_BYTES
    )
    wrong = judge(case, run)
    assert not wrong, f"{case.name} ({case.why}): {'; '.join(wrong)}\n{run.tail(1500)}"
