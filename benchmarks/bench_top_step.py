"""Training steps of the default top (EfficientNet-Lite0's last four stages at 160 px, 113
classes, batches of 64) on this CPU: fp32, bf16 as foramflow trains it (filters
channels-last, the strided depthwise convolutions at stride 1 and subsampled), and bf16 with
either of those undone. Medians of interleaved rounds, in images per second.

    python benchmarks/bench_top_step.py [--rounds 3] [--save NAME]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import foramflow.models.top_tuned as top_tuned
from foramflow.models.backbones import resolve_weights
from foramflow.models.registry import create_model
from saved_results import machine, save_result

STEPS = 6
SUBSAMPLED = top_tuned._strided


def network():
    return create_model(
        "efficientnet_lite0_top", n_classes=113, input_size=160, channels=1,
        weights=str(resolve_weights("efficientnet_lite0", None)),
    )  # fmt: skip


def rate(top, rows, labels, *, bf16: bool, subsampled: bool) -> float:
    top_tuned._strided = SUBSAMPLED if subsampled else (lambda block: False)
    optimizer = torch.optim.AdamW([p for p in top.parameters() if p.requires_grad], 1e-6)
    top.train()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(top(rows).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(STEPS):
        step()
    return len(rows) * STEPS / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--save", metavar="NAME", help="also write benchmarks/results/NAME.json")
    args = parser.parse_args()
    who = machine()
    print(f"# {who['cpu']}, {who['cores']} cores, flags: {' '.join(who['flags'])}")
    torch.manual_seed(0)
    net = network()
    with torch.no_grad():
        rows = net.bottom(torch.rand(64, 1, 160, 160))
    labels = torch.randint(0, 113, (64,))
    channels_last = net.top
    contiguous = copy.deepcopy(net.top).to(memory_format=torch.contiguous_format)
    cases = {
        "fp32 (as trained)": (channels_last, False, True),
        "bf16 (as trained)": (channels_last, True, True),
        "bf16, strided depthwise": (channels_last, True, False),
        "bf16, filters not channels-last": (contiguous, True, True),
        "bf16, both undone": (contiguous, True, False),
    }
    found = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (top, bf16, subsampled) in cases.items():
            found[name].append(rate(top, rows, labels, bf16=bf16, subsampled=subsampled))
    rows_out = [[name, round(statistics.median(r), 1)] for name, r in found.items()]
    for row in rows_out:
        print(" | ".join(map(str, row)))
    if args.save:
        path = save_result(
            args.save,
            title="Training steps of the default top, batches of 64",
            columns=["step", "images/s (median)"],
            rows=rows_out,
            notes=f"{args.rounds} interleaved rounds of {STEPS} steps after one untimed step.",
        )
        print(f"saved {path}")


if __name__ == "__main__":
    main()
