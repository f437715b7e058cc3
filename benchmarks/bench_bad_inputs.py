"""Bad inputs: what every command does with each hostile file, and its peak memory.

Writes the corpus of tests/bad_inputs.py (good images among empty, truncated, renamed,
exotic, header-declared 144 and 400 Mpx, TIFFs of 64 samples or of one 1 GiB tile, looping,
dangling, unreadable and oddly named files) in a temporary folder, runs classify, train,
segment and label on it as fresh processes, as a user would, then the label app's
thumbnails of every image (and of an ordinary 49 Mpx PNG), stack on stacks holding the
hostile TIFFs and PNGs, and every case of the bad-bundle corpus (tests/bad_bundles.py:
zipped bundles with a 1 GiB model.onnx or two model.json, a model.json nested 100 000
deep, validation.npz claiming 50 M rows or holding NaN, inf, one class or nothing, a cut
run.json, human counts of 1e308) through predict, evaluate, calibrate, classify, ensemble
and abundance. Prints markdown tables:

* file → outcome per image command: processed, reported (with the reason the command gave),
  ignored (not an image by its suffix or kind), or LOST; ✗ marks an outcome a correct run
  must not give;
* bundle case → exit status, what was wrong (nothing, for a correct run) and peak memory;
* per command: exit status, seconds, peak resident memory summed over the command's
  processes (sampled every 0.1 s from /proc) and of its largest process, and whether the
  sum stayed under 1 GB (for the bundle commands, the largest of their cases).

The classify bundle is --bundle, else the one the corpus training run wrote, else one trained
here on the corpus's good images. A command whose processes together pass --guard-mb is
killed, so that a decompression bomb cannot take a shared machine down; its row says so.
Commands run with their default worker counts; classify with --precision fp32.

Usage: python benchmarks/bench_bad_inputs.py [--bundle DIR] [--good 4] [--guard-mb 4096]
       [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bad_bundles import judge, make_bad_bundles
from bad_inputs import (
    COMMANDS,
    SAMPLES,
    THUMBNAILS,
    TRAIN_OPTIONS,
    Expected,
    Outcomes,
    Run,
    cell,
    command_line,
    display_name,
    make_bad_input_corpus,
    make_stack_corpus,
    problems,
    read_outcomes,
    run_command,
    write_thumbnail_extra,
)
from saved_results import save_result

MEMORY_LIMIT_BYTES = 2**30
TIMEOUT_S = 600


def run(command: str, corpus: Path, work: Path, guard_bytes: int, bundle: Path | None = None):
    out = work / command
    args = command_line(command, corpus, out, bundle=bundle, workers=None)
    print(f"running: foramflow {' '.join(args)}", file=sys.stderr, flush=True)
    done = run_command(command, args, out, timeout_s=TIMEOUT_S, memory_guard_bytes=guard_bytes)
    print(f"  {status(done)} in {done.seconds:.1f} s", file=sys.stderr, flush=True)
    return done


def status(done: Run) -> str:
    return done.stopped or f"exit {done.returncode}"


def clean_bundle(work: Path, corpus: Path, expected: dict[str, Expected], guard: int) -> Path:
    """A tiny bundle trained on the corpus's good images alone."""
    clean = work / "clean_images"
    for key in expected:
        sample, _, name = key.partition("/")
        if sample in SAMPLES and name.startswith("good_"):
            (clean / sample).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(corpus / key, clean / sample / name)
    out = work / "clean_run"
    args = ["train", str(clean), "--out", str(out), *TRAIN_OPTIONS]
    done = run_command("train", args, out, timeout_s=TIMEOUT_S, memory_guard_bytes=guard)
    if done.returncode != 0:
        raise SystemExit(f"could not train a bundle on the good images:\n{done.tail()}")
    return out / "bundle"


def outcome_table(expected: dict[str, Expected], outcomes: dict[str, Outcomes]) -> str:
    lines = [
        "| file | what it is | " + " | ".join(COMMANDS) + " |",
        "|---|---|" + "---|" * len(COMMANDS),
    ]
    for key, wanted in expected.items():
        cells = [cell(command, key, outcomes[command], wanted) for command in COMMANDS]
        name = display_name(key).replace("|", "\\|")
        lines.append(f"| `{name}` | {wanted.why} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_table(runs: dict[str, Run], wrong: dict[str, int]) -> str:
    lines = [
        "| command | exit | traceback | s | peak MB, all processes | peak MB, largest process "
        "| under 1 GB | files handled wrongly |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for command, done in runs.items():
        under = "yes" if done.peak_group_bytes < MEMORY_LIMIT_BYTES and not done.stopped else "NO"
        lines.append(
            f"| {command} | {status(done)} | {'YES' if done.traceback else 'no'} "
            f"| {done.seconds:.1f} | {done.peak_group_bytes / 2**20:.0f} "
            f"| {done.peak_process_bytes / 2**20:.0f} | {under} | {wrong.get(command, '')} |"
        )
    return "\n".join(lines)


def bundle_cases(work: Path, guard: int) -> tuple[str, dict[str, Run], dict[str, int]]:
    """Every case of the bad-bundle corpus: a table of cases, and per command its run of the
    largest peak and its number of cases handled wrongly."""
    lines = ["| case | what it is | exit | wrong | peak MB |", "|---|---|---|---|---|"]
    worst: dict[str, Run] = {}
    wrong: dict[str, int] = {}
    for case in make_bad_bundles(work / "bundles"):
        print(f"running: foramflow {' '.join(case.args)}", file=sys.stderr, flush=True)
        done = run_command(
            case.command, case.args, work, timeout_s=TIMEOUT_S, memory_guard_bytes=guard
        )
        found = judge(case, done)
        lines.append(
            f"| {case.name} | {case.why} | {status(done)} | {'; '.join(found) or '-'} "
            f"| {done.peak_group_bytes / 2**20:.0f} |"
        )
        key = f"{case.command} (bundle corpus)"
        wrong[key] = wrong.get(key, 0) + bool(found)
        if key not in worst or done.peak_group_bytes > worst[key].peak_group_bytes:
            worst[key] = done
    return "\n".join(lines), worst, wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle for classify (else: trained here)")
    parser.add_argument("--good", type=int, default=4, help="good images per sample folder")
    parser.add_argument("--guard-mb", type=int, default=4096, help="kill a command above this")
    parser.add_argument("--work", type=Path, help="keep the corpus and outputs in this new folder")
    parser.add_argument("--save", metavar="NAME", help="also write benchmarks/results/NAME.json")
    args = parser.parse_args()
    guard = args.guard_mb * 2**20
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpus = work / "images"
        expected = make_bad_input_corpus(corpus, good=args.good)
        counted = sum(wanted.counted("classify") for wanted in expected.values())
        print(f"corpus: {len(expected)} entries, {counted} with an image suffix, in {corpus}\n")
        runs = {"train": run("train", corpus, work, guard)}
        bundle = args.bundle
        if bundle is None:
            trained = work / "train" / "bundle"
            bundle = trained if trained.is_dir() else clean_bundle(work, corpus, expected, guard)
        runs["classify"] = run("classify", corpus, work, guard, bundle)
        runs["segment"] = run("segment", corpus, work, guard)
        runs["label"] = run("label", corpus, work, guard)
        outcomes = {command: read_outcomes(runs[command], expected) for command in COMMANDS}
        wrong = {c: len(problems(c, outcomes[c], expected)) for c in COMMANDS}
        extra = write_thumbnail_extra(work / "thumbnail_extra")
        print("running: label app thumbnails", file=sys.stderr, flush=True)
        runs["label thumbnails"] = run_command(
            "thumbnails",
            [str(work / "label"), str(extra)],
            work / "label",
            timeout_s=TIMEOUT_S,
            memory_guard_bytes=guard,
            program=THUMBNAILS,
        )
        make_stack_corpus(work / "stacks", corpus)
        print("running: stack", file=sys.stderr, flush=True)
        runs["stack"] = run_command(
            "stack",
            ["stack", str(work / "stacks"), "--out", str(work / "fused")],
            work / "fused",
            timeout_s=TIMEOUT_S,
            memory_guard_bytes=guard,
        )
        cases, worst, case_wrong = bundle_cases(work, guard)
        runs.update(worst)
        wrong.update(case_wrong)
        print(outcome_table(expected, outcomes), end="\n\n")
        print(cases, end="\n\n")
        print(memory_table(runs, wrong), end="\n\n")
        print(f"- label thumbnails: {runs['label thumbnails'].last_line()}")
        print(
            f"- stack (exit 1: stacks holding a hostile plane fail, each named): "
            f"{runs['stack'].output.count('failed: ')} stacks failed"
        )
        for command in COMMANDS:
            if runs[command].returncode != 0:
                print(f"- {runs[command].describe()}")
        if args.save:
            save_memory_table(args.save, runs, wrong, entries=len(expected))


def save_memory_table(name: str, runs: dict[str, Run], wrong: dict[str, int], entries: int):
    rows = [
        [
            command,
            done.returncode,
            "yes" if done.traceback else "no",
            round(done.peak_group_bytes / 2**20),
            "yes" if done.peak_group_bytes < MEMORY_LIMIT_BYTES and not done.stopped else "NO",
            wrong.get(command, "not judged"),
        ]
        for command, done in runs.items()
    ]
    path = save_result(
        name,
        title=f"Every command on the hostile-file corpus ({entries} entries)",
        columns=["command", "exit", "traceback", "peak MB", "under 1 GB", "handled wrongly"],
        rows=rows,
        notes="Peak resident memory summed over the command's processes, sampled every 0.1 s. "
        "Rows for predict, evaluate, calibrate, ensemble and abundance are the worst case of "
        "the bad-bundle corpus.",
    )
    print(f"saved: {path}")


if __name__ == "__main__":
    main()
