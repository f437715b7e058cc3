"""Benchmark results saved as small JSON files, which the documentation's results page renders.

A result file records the table a benchmark printed, the command that printed it, the
machine it ran on (processor model and flags, cores) and the foramflow commit, so that every
figure on the results page can be traced back and made again::

    python benchmarks/bench_demo.py --save demo_quick

writes ``benchmarks/results/demo_quick.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni")


def machine() -> dict:
    """The processor's model name, the flags that matter for speed, and the core count."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {
        "cpu": model,
        "flags": [flag for flag in SHOWN_FLAGS if flag in flags],
        "cores": os.cpu_count(),
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=RESULTS_DIR.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def save_result(
    name: str, *, title: str, columns: list[str], rows: list[list], notes: str = ""
) -> Path:
    """Write ``benchmarks/results/<name>.json``: the table, the command line that made it,
    the machine and the commit."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    record = {
        "title": title,
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "commit": _commit(),
        "machine": machine(),
        "columns": columns,
        "rows": rows,
        "notes": notes,
    }
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
