"""Time every stage of ``foramflow demo`` and print how well it recovers the truth.

    python benchmarks/bench_demo.py                  # the quick profile
    python benchmarks/bench_demo.py --profile default --out /tmp/demo-default
    python benchmarks/bench_demo.py --profile default --save demo_default   # for the docs

Prints the load average before and after (the machine may be shared: times on a loaded
machine are longer than the demo's own), wall and CPU seconds per stage, the validation
accuracy, the accuracy on the core's crops, and the mean absolute error (percentage points)
of each abundance estimate against the true assemblages. ``--save NAME`` also writes the
figures to ``benchmarks/results/NAME.json`` for the documentation's results page.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from foramflow.demo import DEFAULT, QUICK, TINY, run_demo
from saved_results import save_result

PROFILES = {"tiny": TINY, "quick": QUICK, "default": DEFAULT}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", type=Path, help="demo folder (default: a temporary one)")
    parser.add_argument("--save", metavar="NAME", help="also write benchmarks/results/NAME.json")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-demo-")) / "demo"
    if (out / "demo.json").exists():
        raise SystemExit(f"{out} holds an earlier run: its stages would be reused, not timed")

    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    children = os.times()
    run_demo(out, profile=PROFILES[args.profile])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = os.times()
    child_cpu = (after.children_user + after.children_system) - (
        children.children_user + children.children_system
    )
    state = json.loads((out / "demo.json").read_text())

    print(f"profile {args.profile}: {state['profile']}")
    print(f"load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}")
    print(f"load average (1, 5, 15 min) after:  {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{os.cpu_count()} cores")
    for entry in state["stages"].values():
        print(f"  {entry['title']:<38} {entry['seconds']:7.1f} s")
    print(f"total wall {wall:.1f} s; CPU {cpu:.1f} s in this process, {child_cpu:.1f} s in workers")
    stages = {name: entry["summary"] for name, entry in state["stages"].items()}
    print(
        f"validation accuracy {stages['run']['validation_accuracy']:.3f}, "
        f"training {stages['run']['training_images_per_s']:.0f} images/s; core crops: "
        f"accuracy {stages['evaluation']['accuracy_all']:.3f} "
        f"({stages['evaluation']['accuracy_decided']:.3f} of those not unsure, "
        f"{stages['evaluation']['unsure_share']:.1%} unsure)"
    )
    errors = pd.read_csv(out / "abundance" / "errors_vs_truth.csv", index_col="estimate")
    print("mean absolute error against the truth, percentage points:")
    print(errors.round(2).to_string())
    print(f"report: {out / 'report.html'}")
    if args.save:
        rows = [
            ["particles on the trays", stages["crops"]["true_particles"]],
            ["of them found by segmentation", stages["crops"]["true_particles_found"]],
            ["validation accuracy", round(stages["run"]["validation_accuracy"], 3)],
            ["top class right, all core crops", round(stages["evaluation"]["accuracy_all"], 3)],
            ["share of core crops left unsure", round(stages["evaluation"]["unsure_share"], 3)],
            *(
                [f"abundance error, {name} (pp)", round(float(value), 2)]
                for name, value in errors["all"].items()
            ),
            *(
                [f"time: {entry['title']} (s)", round(entry["seconds"], 1)]
                for entry in state["stages"].values()
            ),
            ["time: total (s)", round(wall, 1)],
        ]
        path = save_result(
            args.save,
            title=f"foramflow demo, {args.profile} profile (seed 0)",
            columns=["figure", "value"],
            rows=rows,
            notes="Abundance errors: mean absolute error against the true assemblages over "
            f"every sample and class, in percentage points. Load average (1 min) "
            f"{load_before[0]:.2f} before the run and {os.getloadavg()[0]:.2f} after it: "
            "times on a busy machine are longer.",
        )
        print(f"saved: {path}")


if __name__ == "__main__":
    main()
