"""The bad-input corpus through classify, train, segment and label, as a user runs them.

Each command runs once, as a fresh process, on the same corpus (tests/bad_inputs.py). A
correct run completes (exit status 0), prints no traceback, processes or reports with a
reason every entry that has an image suffix (and no other), and its own counts agree with
that. Peak memory is measured by benchmarks/bench_bad_inputs.py, not asserted here; the
memory guard only keeps a decompression bomb from taking the machine down.

The train run dominates the time (imports and the ONNX export, whatever the set's size).
"""

from __future__ import annotations

import os

import pytest

from bad_inputs import (
    COMMANDS,
    LARGE_PNG,
    PROCESSED,
    REPORTED,
    STACKED,
    THUMBNAILS,
    Record,
    command_line,
    make_bad_input_corpus,
    make_stack_corpus,
    match_records,
    problems,
    read_outcomes,
    run_command,
    write_thumbnail_extra,
)

GOOD_PER_SAMPLE = 4
MEMORY_GUARD_BYTES = int(os.environ.get("FORAMFLOW_CORPUS_GUARD_MB", "3072")) * 2**20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "images"
    return root, make_bad_input_corpus(root, good=GOOD_PER_SAMPLE)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The mean-brightness bundle of the classify tests: known answers, no training."""
    from classify.conftest import write_bundle

    return write_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(
    scope="module",
    params=[pytest.param(c, marks=pytest.mark.slow) if c == "train" else c for c in COMMANDS],
)
def finished(request, corpus, bundle, tmp_path_factory):
    """(run, outcomes, expected) of one command on the corpus."""
    root, expected = corpus
    command = request.param
    out = tmp_path_factory.mktemp(command) / "out"
    args = command_line(command, root, out, bundle=bundle, workers=1)
    run = run_command(command, args, out, timeout_s=240, memory_guard_bytes=MEMORY_GUARD_BYTES)
    return run, read_outcomes(run, expected), expected


def test_run_completes_without_a_traceback(finished):
    run, _, _ = finished
    assert run.stopped is None, f"{run.command}: {run.stopped}"
    assert not run.traceback, f"{run.describe()}\n{run.tail()}"
    assert run.returncode == 0, f"{run.describe()}\n{run.tail()}"


def test_every_file_is_processed_or_reported_with_a_reason(finished):
    run, outcomes, expected = finished
    found = problems(run.command, outcomes, expected)
    assert not found, f"{run.describe()}; {len(found)} file(s) handled wrongly\n" + "\n".join(found)


def test_counts_add_up(finished):
    """Images found = processed + reported, in the command's own figures too."""
    run, outcomes, expected = finished
    counted = {key for key, wanted in expected.items() if wanted.counted(run.command)}
    tally = {PROCESSED: 0, REPORTED: 0}
    for key in counted:
        if outcomes.outcome(key) in tally:
            tally[outcomes.outcome(key)] += 1
    assert tally[PROCESSED] + tally[REPORTED] == len(counted), f"{run.describe()}: {tally}"
    wanted = own_counts(run.command, tally)
    assert set(wanted) <= set(outcomes.summary), (
        f"{run.command} did not say {sorted(set(wanted) - set(outcomes.summary))}"
    )
    assert {k: outcomes.summary[k] for k in wanted} == wanted


def own_counts(command: str, tally: dict[str, int]) -> dict[str, int]:
    """The figures a command writes or prints, and what they must be."""
    found = tally[PROCESSED] + tally[REPORTED]
    if command == "classify":
        return {"rows": found, "run.json n_images": found, "counts.csv total": found}
    if command == "segment":
        return {"images segmented": tally[PROCESSED]}
    if command == "label":
        return {"new images": tally[PROCESSED]}
    return {}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_corpus_holds_what_it_promises(corpus):
    """The generator's own check: names, kinds and header sizes are what the tests assume."""
    import tifffile
    from PIL import Image

    root, expected = corpus
    by_name = {os.fsencode(key).rsplit(b"/", 1)[-1]: root / key for key in expected}
    assert os.path.isfile(os.fsencode(by_name[b"bad\xff.png"]))
    assert by_name[b"new\nline.png"].is_file()
    assert by_name[b"x.jpg"].is_dir() and by_name[b"inside.png"].parent == by_name[b"x.jpg"]
    assert os.readlink(by_name[b"loop_a.png"]) == "loop_b.png"
    assert not by_name[b"dangling.png"].exists()
    assert by_name[b"unreadable.png"].stat().st_mode & 0o777 == 0
    with Image.open(by_name[b"huge_12000px.png"]) as image:
        assert image.size == (12000, 12000)
    assert by_name[b"huge_12000px.png"].stat().st_size < 2**20
    with tifffile.TiffFile(by_name[b"huge_20000px_zlib.tif"]) as tif:
        assert tif.pages[0].shape == (20000, 20000)
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert by_name[b"huge_20000px_zlib.tif"].stat().st_size < 4 * 2**20
    with tifffile.TiffFile(by_name[b"multipage.tif"]) as tif:
        assert len(tif.pages) == 2
    assert not expected["S2/x.jpg"].counted("classify")
    samples = {key.split("/", 1)[0] for key in expected}
    assert samples == {"S1", "S2"}
    for sample in samples:
        good = [key for key in expected if key.startswith(f"{sample}/good_")]
        assert len(good) == GOOD_PER_SAMPLE


def test_the_judge_finds_lost_doubled_let_in_and_stranger_files(corpus):
    """The harness itself: a run that handles every entry as allowed passes, whatever way it
    writes awkward names; each kind of mistake added to it is named once."""
    root, expected = corpus
    records = []
    for key, wanted in expected.items():
        if wanted.counted("train") and key != "S1/zero_bytes.jpg":
            outcome = sorted(wanted.allowed["train"])[0]
            written = str(root / key).replace("\n", "\\n")
            records.append(Record(outcome, written, "a reason", "split.csv"))
    records += [
        Record(PROCESSED, "S1/bad\\xff.png", "", "split.csv"),
        Record(PROCESSED, str(root / "S2" / "animation.gif"), "", "split.csv"),
        Record(REPORTED, "elsewhere/other.png", "a reason", "skipped_images.csv"),
    ]
    found = problems("train", match_records(records, list(expected)), expected)
    by_name = {line.split(":")[0]: line for line in found}
    assert len(found) == len(by_name) == 4, found
    assert "lost" in by_name["S1/zero_bytes.jpg"]
    assert "listed 2 times in split.csv" in by_name["S1/bad\\xff.png"]
    assert "counted" in by_name["S2/animation.gif"]
    assert "not a corpus file" in by_name["'elsewhere/other.png'"]


def test_thumbnails_of_every_image_are_made_or_refused_with_a_reason(corpus, tmp_path):
    """The label app's thumbnail of each registered image, eight asked for at once, and of an
    ordinary 49 Mpx PNG: made, or refused (404) with the reason; never a server error."""
    root, _ = corpus
    project = tmp_path / "project"
    label = run_command("label", command_line("label", root, project, workers=1), project)
    assert label.returncode == 0, label.tail()
    extra = write_thumbnail_extra(tmp_path / "extra")
    run = run_command(
        "thumbnails",
        [str(project), str(extra)],
        project,
        program=THUMBNAILS,
        timeout_s=120,
        memory_guard_bytes=MEMORY_GUARD_BYTES,
    )
    assert run.stopped is None and not run.traceback and run.returncode == 0, run.tail()
    lines = dict(line.split(": ", 1) for line in run.output.splitlines() if ": " in line)
    assert lines[f"thumbnail {extra / LARGE_PNG}"] == "ok"
    assert lines["thumbnails"].endswith(" 0 failed"), run.tail()
    refused = [said for said in lines.values() if said.startswith("HTTP 404")]
    assert refused and all(said.count(": ") >= 1 for said in refused), refused
    said = {key.rsplit("/", 1)[-1]: value for key, value in lines.items()}
    for name in ("good_00.png", "grey16.png", "rgba.png", "palette.png"):
        assert said[name] == "ok", name
    for name in ("huge_12000px.png", "huge_20000px_zlib.tif", "tile_32768.tif"):
        assert name not in said or "over the limit" in said[name], said.get(name)


def test_stack_names_each_plane_over_the_caps(corpus, tmp_path):
    """A stack of good planes and one hostile one: the stack fails, naming the plane and the
    cap, before it is decoded; no traceback."""
    root, _ = corpus
    stacks = make_stack_corpus(tmp_path / "stacks", root)
    out = tmp_path / "fused"
    run = run_command(
        "stack",
        ["stack", str(tmp_path / "stacks"), "--out", str(out)],
        out,
        timeout_s=120,
        memory_guard_bytes=MEMORY_GUARD_BYTES,
    )
    assert run.stopped is None and not run.traceback, run.tail()
    assert run.returncode == 1, run.tail()  # some stacks failed, and the command says so
    failed = [line for line in run.output.splitlines() if line.startswith("failed: ")]
    assert len(failed) == len(STACKED) == len(stacks), run.tail()
    for folder, plane in stacks.items():
        line = next(line for line in failed if line.startswith(f"failed: {folder}:"))
        assert f"{folder}/{plane}: " in line
        assert "over the limit" in line or "samples per pixel" in line
