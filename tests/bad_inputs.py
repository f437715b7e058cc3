"""The bad-input corpus: hostile and unlucky files among good ones, and what commands did with them.

:func:`make_bad_input_corpus` writes two sample folders, ``S1/`` and ``S2/``, each holding
``good`` small tray-like images (a bright particle on a dark background) and a share of bad
entries: empty, truncated, renamed, exotic pixel formats, header-declared decompression
bombs, link loops, dangling links, an unreadable file, awkward names and a folder that looks
like an image. The same folder is a classify input (first folder = sample), a folder-per-class
training set (classes S1 and S2), a folder of trays for ``segment`` and images for ``label``.

For every entry it returns what a correct run of each command must do with it:

- ``processed``: decoded (classified, trained on, segmented, registered);
- ``reported``: listed, with a reason, as a file that could not be used;
- ``ignored``: not an image by its suffix or kind; never counted, never listed.

Where the README does not say whether a format is supported, both ``processed`` and
``reported`` are allowed. :func:`run_command` runs one command as a user would (a fresh
process) and measures its memory; :func:`read_outcomes` reads the command's own outputs to
find out what became of each entry.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from bombs import huge_tile_tiff, many_samples_tiff

COMMANDS = ("classify", "train", "segment", "label")
PROCESSED, REPORTED, IGNORED = "processed", "reported", "ignored"
EITHER = frozenset({PROCESSED, REPORTED})
SAMPLES = ("S1", "S2")

# Settings that make every command cheap on the corpus's 32-pixel images.
TRAIN_OPTIONS = (
    *("--input-size", "32", "--epochs", "1", "--batch-size", "16", "--min-per-class", "2"),
    *("--device", "cpu", "--precision", "fp32", "--no-augment"),
)
CLASSIFY_OPTIONS = ("--precision", "fp32")
SEGMENT_OPTIONS = ("--pixels-per-mm", "100", "--min-area-um2", "500")
FORAMFLOW = (sys.executable, "-c", "from foramflow.cli import app; app()")
TRACEBACK = re.compile(r"Traceback|most recent call last")
REPORT_WORDS = re.compile(r"skip|fail|error|cannot|could not|unreadable|refus|not read", re.I)


# -- what a correct run does with each entry -------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """The outcomes a correct run of each command may give one corpus entry, and why."""

    allowed: Mapping[str, frozenset[str]]
    why: str

    def counted(self, command: str) -> bool:
        """True when the command must count the entry (process or report it)."""
        return IGNORED not in self.allowed[command]


def expect(why: str, default: frozenset[str] | str, **per_command: frozenset[str] | str):
    """An :class:`Expected` with ``default`` for every command unless ``per_command`` says."""

    def as_set(outcomes: frozenset[str] | str) -> frozenset[str]:
        return frozenset({outcomes}) if isinstance(outcomes, str) else frozenset(outcomes)

    return Expected(
        {command: as_set(per_command.get(command, default)) for command in COMMANDS}, why
    )


@dataclass(frozen=True)
class Entry:
    """One thing to write into the corpus: a file, a symbolic link or a folder."""

    relpath: bytes
    expected: Expected
    content: bytes | None = None
    link_to: bytes | None = None
    is_folder: bool = False
    mode: int | None = None

    @property
    def key(self) -> str:
        return os.fsdecode(self.relpath)


# -- images -----------------------------------------------------------------------------------


def particle_pixels(seed: int, size: int = 32) -> np.ndarray:
    """A bright round particle at a random place on a dark, noisy tray (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(0.4, 0.6, 2) * size
    radius = rng.uniform(0.2, 0.28) * size
    disc = np.hypot(yy - cy, xx - cx) < radius
    image = 0.1 + 0.7 * disc + rng.normal(0, 0.03, (size, size))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def good_png(seed: int) -> bytes:
    return encode(Image.fromarray(particle_pixels(seed)), "PNG")


def noisy_bytes(image_format: str) -> bytes:
    """A 64-pixel noisy colour image, large enough that half its bytes cut into the pixels."""
    pixels = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), image_format)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def grey16_png() -> bytes:
    pixels = particle_pixels(11).astype(np.uint16) * 257
    return encode(Image.fromarray(pixels), "PNG")


def rgba_png() -> bytes:
    grey = particle_pixels(12)
    alpha = np.full_like(grey, 200)
    return encode(Image.fromarray(np.dstack([grey, grey, grey, alpha])), "PNG")


def palette_png() -> bytes:
    return encode(Image.fromarray(particle_pixels(13)).convert("RGB").convert("P"), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(particle_pixels(14)).convert("CMYK"), "JPEG")


def gif() -> bytes:
    return encode(Image.fromarray(particle_pixels(15)), "GIF")


def tiff(write) -> bytes:
    """The bytes of a TIFF written by ``write(tifffile.TiffWriter)``."""
    import tifffile

    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        write(writer)
    return buffer.getvalue()


def float32_tiff() -> bytes:
    pixels = particle_pixels(16).astype(np.float32) / 255
    return tiff(lambda writer: writer.write(pixels))


def multipage_tiff() -> bytes:
    def write(writer) -> None:
        for seed in (17, 18):
            writer.write(particle_pixels(seed), photometric="minisblack")

    return tiff(write)


def bilevel_png(width: int, height: int) -> bytes:
    """A blank 1-bit PNG: 12000² pixels compress to about 17 KB and need 18 MB to write."""
    return encode(Image.new("1", (width, height)), "PNG")


def zlib_tiff(side: int, tile: int = 1024) -> bytes:
    """A blank 8-bit zlib TIFF of side² pixels, written one tile at a time (never whole)."""
    blank = np.zeros((tile, tile), np.uint8)
    n_tiles = (-(-side // tile)) ** 2

    def write(writer) -> None:
        writer.write(
            (blank for _ in range(n_tiles)),
            shape=(side, side),
            dtype=np.uint8,
            tile=(tile, tile),
            compression="zlib",
            compressionargs={"level": 1},
        )

    return tiff(write)


# -- the corpus -------------------------------------------------------------------------------


def corpus_entries(good: int) -> list[Entry]:
    """Every entry of the corpus, good images first, then the bad ones shared between S1, S2."""
    from foramflow.io.images import IMAGE_SUFFIXES

    fine = expect("a good image", PROCESSED)
    entries = [
        Entry(f"{sample}/good_{i:02d}.png".encode(), fine, good_png(10 * k + i))
        for k, sample in enumerate(SAMPLES)
        for i in range(good)
    ]
    gif_outcome = PROCESSED if ".gif" in IMAGE_SUFFIXES else IGNORED
    bad = [
        (b"zero_bytes.jpg", b"", expect("empty file", REPORTED)),
        (
            b"truncated.jpg",
            truncated(noisy_bytes("JPEG")),
            expect("truncated JPEG", REPORTED, label=EITHER),
        ),
        (
            b"truncated.png",
            truncated(noisy_bytes("PNG")),
            expect("truncated PNG", REPORTED, label=EITHER),
        ),
        (b"text_renamed.jpg", b"plain text, not an image\n", expect("text file", REPORTED)),
        (
            b"html_renamed.png",
            b"<!DOCTYPE html><html><body>not an image</body></html>\n",
            expect("HTML file", REPORTED),
        ),
        (b"grey16.png", grey16_png(), expect("16-bit grey (README: supported)", PROCESSED)),
        (
            b"float32.tif",
            float32_tiff(),
            expect("float TIFF: no bit depth to rescale by", REPORTED, label=EITHER),
        ),
        (b"rgba.png", rgba_png(), expect("RGBA (README: supported)", PROCESSED)),
        (b"palette.png", palette_png(), expect("palette (README: supported)", PROCESSED)),
        (b"cmyk.jpg", cmyk_jpeg(), expect("CMYK JPEG (README: silent)", EITHER)),
        (b"one_by_one.png", bilevel_png(1, 1), expect("1×1 pixel", EITHER)),
        (b"one_by_10000.png", bilevel_png(1, 10000), expect("1×10000 pixels", EITHER)),
        (
            b"huge_12000px.png",
            bilevel_png(12000, 12000),
            expect(
                "144 Mpx PNG: refused from its header (one float copy is 576 MB; labelling "
                "reads headers only)",
                REPORTED,
                label=EITHER,
            ),
        ),
        (
            b"huge_20000px_zlib.tif",
            zlib_tiff(20000),
            expect(
                "400 Mpx zlib TIFF: refused from its header (labelling reads headers only)",
                REPORTED,
                label=EITHER,
            ),
        ),
        (b"multipage.tif", multipage_tiff(), expect("two-page TIFF (README: silent)", EITHER)),
        (
            b"samples_64.tif",
            many_samples_tiff(),
            expect(
                "4000² px TIFF of 64 samples per pixel: 1 GB of samples inside the pixel cap",
                REPORTED,
                label=EITHER,
            ),
        ),
        (
            b"tile_32768.tif",
            huge_tile_tiff(),
            expect(
                "64² px TIFF stored in one 32768² tile: a 1 GiB tile to decode",
                REPORTED,
                label=EITHER,
            ),
        ),
        (b"animation.gif", gif(), expect("GIF: not an image suffix foramflow reads", gif_outcome)),
    ]
    for i, (name, content, expected) in enumerate(bad):
        entries.append(Entry(SAMPLES[i % 2].encode() + b"/" + name, expected, content))
    entries += [
        Entry(b"S2/loop_a.png", expect("link loop", REPORTED), link_to=b"loop_b.png"),
        Entry(b"S2/loop_b.png", expect("link loop", REPORTED), link_to=b"loop_a.png"),
        Entry(b"S1/dangling.png", expect("dangling link", REPORTED), link_to=b"nowhere.png"),
        Entry(
            b"S1/bad\xff.png",
            expect("non-UTF-8 name: escaped or reported", EITHER),
            good_png(90),
        ),
        Entry(b"S2/new\nline.png", expect("newline in the name", EITHER), good_png(91)),
        Entry(b"S2/x.jpg", expect("a folder, not an image", IGNORED), is_folder=True),
        Entry(b"S2/x.jpg/inside.png", fine, good_png(92)),
        Entry(b"S2/unreadable.png", expect("mode 000", REPORTED), good_png(93), mode=0),
    ]
    return entries


def make_bad_input_corpus(root: Path, *, good: int = 4) -> dict[str, Expected]:
    """Write the corpus under ``root``; return relative path (POSIX; a non-UTF-8 name
    surrogate-escaped) → what a correct run must do with it.

    ``good`` images per sample folder: pass ``--min-per-class`` at most ``good`` to train.
    The unreadable file is expected to be processed where this process can still read it
    (as root).
    """
    base = os.fsencode(root)
    expected = {}
    for entry in corpus_entries(good):
        path = os.path.join(base, entry.relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if entry.is_folder:
            os.makedirs(path, exist_ok=True)
        elif entry.link_to is not None:
            os.symlink(entry.link_to, path)
        else:
            with open(path, "wb") as file:
                file.write(entry.content)
        outcome = entry.expected
        if entry.mode is not None:
            os.chmod(path, entry.mode)
            if readable(path):
                outcome = expect(outcome.why + ", readable all the same (root)", PROCESSED)
        expected[entry.key] = outcome
    return expected


def readable(path: bytes) -> bool:
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError:
        return False
    return True


def display_name(key: str) -> str:
    """The entry's name on one printable line (newline and undecodable bytes escaped)."""
    return (
        key.encode("utf-8", "surrogateescape")
        .decode("utf-8", "backslashreplace")
        .replace("\n", "\\n")
    )


# -- running a command ------------------------------------------------------------------------


def command_line(
    command: str, corpus: Path, out: Path, *, bundle: Path | None = None, workers: int | None
) -> list[str]:
    """The foramflow arguments of ``command`` on ``corpus``, writing to ``out``."""
    decoders = [] if workers is None else ["--workers", str(workers)]
    if command == "classify":
        if bundle is None:
            raise ValueError("classify needs a bundle")
        return [
            "classify",
            str(bundle),
            str(corpus),
            "--out",
            str(out),
            *CLASSIFY_OPTIONS,
            *decoders,
        ]
    if command == "train":
        return ["train", str(corpus), "--out", str(out), *TRAIN_OPTIONS, *decoders]
    if command == "segment":
        return ["segment", str(corpus), "--out", str(out), *SEGMENT_OPTIONS]
    if command == "label":
        return ["label", str(out), "--images", str(corpus), "--no-serve"]
    raise ValueError(f"unknown command {command!r}")


@dataclass
class Run:
    """One finished command: exit status, merged stdout and stderr, time and memory."""

    command: str
    argv: list[str]
    out: Path
    returncode: int
    output: str
    seconds: float
    peak_group_bytes: int  # resident memory summed over the command's processes, sampled
    peak_process_bytes: int  # the largest high-water mark of a single process
    stopped: str | None = None  # why the harness killed it

    @property
    def traceback(self) -> bool:
        return bool(TRACEBACK.search(self.output))

    def describe(self) -> str:
        """The command and how it ended, on one line: what a failure message starts with."""
        ended = self.stopped or f"exit {self.returncode}"
        if self.stopped or self.returncode:
            ended += f" ({self.last_line()})"
        return f"{self.command}: {ended}"

    def last_line(self) -> str:
        """The last line of the output that names an error, else the last line with words."""
        lines = [line.strip(" │╰╭─╯╮\t") for line in self.output.splitlines()]
        lines = [line for line in lines if line]
        errors = [line for line in lines if re.match(r"error:|\w*(Error|Exception)\b", line)]
        return (errors or lines or [""])[-1][:300]

    def tail(self, n: int = 3000) -> str:
        """The end of the output, with the rules and padding of the wide console squeezed."""
        squeezed = re.sub(r"([─━═│ ])\1{7,}", r"\1\1\1", self.output)
        return squeezed[-n:]


def run_command(
    command: str,
    args: list[str],
    out: Path,
    *,
    timeout_s: float = 300,
    memory_guard_bytes: int = 3 * 2**30,
    program: tuple[str, ...] = FORAMFLOW,
) -> Run:
    """Run ``foramflow ARGS`` (or ``program ARGS``) as a fresh process group; kill it past
    the time or memory guard.

    Uses the foramflow package this process imports, with a wide console so that no path is
    wrapped across lines.
    """
    import foramflow

    source = str(Path(foramflow.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
        "COLUMNS": "1000",
        "TERM": "dumb",
    }
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            [*program, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        guard = GroupGuard(process.pid, timeout_s, memory_guard_bytes)
        guard.start()
        process.wait()
        seconds = time.perf_counter() - start
        guard.stop()
        kill_group(process.pid)  # workers that outlived their parent
        log.seek(0)
        output = log.read().decode("utf-8", "surrogateescape")
    return Run(
        command,
        args,
        out,
        process.returncode,
        output,
        seconds,
        peak_group_bytes=guard.peak_bytes,
        peak_process_bytes=guard.peak_process_bytes,
        stopped=guard.stopped,
    )


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def group_memory(pgid: int) -> dict[int, tuple[int, int]]:
    """pid → (resident bytes, peak resident bytes) of each process of group ``pgid``."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            with open(f"/proc/{entry.name}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            found[int(entry.name)] = tuple(
                int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")
            )
        except (OSError, IndexError, KeyError, ValueError):
            continue
    return found


class GroupGuard(threading.Thread):
    """Samples a process group's memory every 0.1 s; kills the group past either limit.

    ``peak_bytes`` is the largest sum of resident memory seen; ``peak_process_bytes`` the
    largest high-water mark of one process (the kernel's, so brief peaks count too).
    """

    def __init__(self, pgid: int, timeout_s: float, memory_bytes: int):
        super().__init__(daemon=True)
        self.pgid, self.timeout_s, self.memory_bytes = pgid, timeout_s, memory_bytes
        self.peak_bytes, self.peak_process_bytes, self.stopped = 0, 0, None
        self._done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self._done.wait(0.1):
            memory = group_memory(self.pgid).values()
            self.peak_bytes = max(self.peak_bytes, sum(rss for rss, _ in memory))
            self.peak_process_bytes = max(self.peak_process_bytes, *(hwm for _, hwm in memory), 0)
            if self.peak_bytes > self.memory_bytes:
                self.stopped = f"killed by the memory guard at {self.peak_bytes / 2**20:.0f} MB"
            elif time.monotonic() > deadline:
                self.stopped = f"killed after {self.timeout_s:.0f} s"
            if self.stopped:
                kill_group(self.pgid)
                return

    def stop(self) -> None:
        self._done.set()
        self.join()


# -- thumbnails and stacks ---------------------------------------------------------------------

#: The label app's thumbnails of every image of a project, asked for eight at a time, as a
#: browser scrolling the grid does; after registering the images of EXTRA (a large ordinary
#: image, say). One line per image: ``thumbnail PATH: ok`` or ``thumbnail PATH: HTTP STATUS
#: REASON``; then ``thumbnails: N ok, M refused, K failed`` (failed: neither 200 nor 4xx).
THUMBNAILS_SCRIPT = """
import sys
from concurrent.futures import ThreadPoolExecutor
from fastapi.testclient import TestClient
from foramflow.label.app import create_app
from foramflow.label.store import LabelStore

project, extra = sys.argv[1], sys.argv[2]
store = LabelStore(project)
store.add_images(extra)
paths = store.image_paths()
client = TestClient(create_app(project), base_url="http://127.0.0.1")

def thumbnail(image_id):
    response = client.get(f"/api/images/{image_id}/thumb")
    detail = "" if response.status_code == 200 else response.json().get("detail", "")
    return image_id, response.status_code, detail

counts = {"ok": 0, "refused": 0, "failed": 0}
with ThreadPoolExecutor(8) as pool:
    for image_id, status, detail in pool.map(thumbnail, sorted(paths)):
        kind = "ok" if status == 200 else "refused" if 400 <= status < 500 else "failed"
        counts[kind] += 1
        name = str(paths[image_id]).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        said = "ok" if status == 200 else f"HTTP {status} {detail}"
        print(f"thumbnail {name.replace(chr(10), chr(92) + 'n')}: {said}", flush=True)
print(f"thumbnails: {counts['ok']} ok, {counts['refused']} refused, {counts['failed']} failed")
"""
THUMBNAILS = (sys.executable, "-c", THUMBNAILS_SCRIPT)
LARGE_PNG = "large_49mpx.png"


def write_thumbnail_extra(folder: Path) -> Path:
    """A folder holding one ordinary 7000 × 7000 RGB PNG (49 Mpx, inside the pixel cap)."""
    from bombs import blank_png

    folder.mkdir(parents=True, exist_ok=True)
    (folder / LARGE_PNG).write_bytes(blank_png(7000, 7000))
    return folder


#: Planes that a stack of good planes is given, one stack each: files from the corpus whose
#: decoding a header must cap.
STACKED = ("samples_64.tif", "tile_32768.tif", "huge_12000px.png", "huge_20000px_zlib.tif")


def make_stack_corpus(root: Path, corpus: Path) -> dict[str, str]:
    """``root/<name>/`` per file of :data:`STACKED`: two good 32² planes and that file as the
    last plane. Returns stack folder → the hostile plane's name."""
    import shutil

    stacks = {}
    for name in STACKED:
        found = sorted(corpus.glob(f"*/{name}"))
        folder = root / Path(name).stem
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(2):
            (folder / f"plane_{i}.png").write_bytes(good_png(200 + i))
        shutil.copyfile(found[0], folder / f"plane_9_{name}")
        stacks[str(folder)] = f"plane_9_{name}"
    return stacks


# -- what became of each entry ----------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One statement of a command's output about one file."""

    outcome: str
    path: str
    reason: str
    source: str


@dataclass
class Outcomes:
    """What a run said about each corpus entry, and the statements that name no entry."""

    by_entry: dict[str, list[Record]]
    strangers: list[Record] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)  # the command's own counts

    def outcome(self, key: str) -> str | None:
        found = {record.outcome for record in self.by_entry.get(key, [])}
        return found.pop() if len(found) == 1 else (None if not found else "both")


def read_outcomes(run: Run, expected: Mapping[str, Expected]) -> Outcomes:
    """Collect what ``run`` said about each entry of the corpus, from its files and output."""
    readers = {
        "classify": classify_records,
        "train": train_records,
        "segment": segment_records,
        "label": label_records,
    }
    records, summary = readers[run.command](run)
    outcomes = match_records(records, list(expected))
    outcomes.summary = summary
    for key in expected:
        outcomes.by_entry[key] += output_records(run, key)
    return outcomes


def classify_records(run: Run) -> tuple[list[Record], dict[str, int]]:
    import json

    import pandas as pd

    table = run.out / "predictions.parquet"
    if not table.is_file():
        return [], {}
    frame = pd.read_parquet(table)
    records = [
        Record(REPORTED if status == "error" else PROCESSED, path, error or "", table.name)
        for path, status, error in zip(frame["path"], frame["status"], frame["error"])
    ]
    summary = {"rows": len(frame)}
    run_json = run.out / "run.json"
    if run_json.is_file():
        summary["run.json n_images"] = int(json.loads(run_json.read_text())["n_images"])
    counts = run.out / "counts.csv"
    if counts.is_file():
        frame = pd.read_csv(counts, index_col=0)
        summary["counts.csv total"] = int(frame.drop(columns="depth", errors="ignore").sum().sum())
    return records, summary


def read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path, encoding_errors="surrogateescape", keep_default_na=False)


def train_records(run: Run) -> tuple[list[Record], dict[str, int]]:
    records = []
    split, skipped = run.out / "split.csv", run.out / "skipped_images.csv"
    if split.is_file():
        records += [Record(PROCESSED, p, "", split.name) for p in read_csv(split)["path"]]
    if skipped.is_file():
        frame = read_csv(skipped)
        records += [
            Record(REPORTED, p, r, skipped.name) for p, r in zip(frame["path"], frame["reason"])
        ]
    return records, {}


def segment_records(run: Run) -> tuple[list[Record], dict[str, int]]:
    """Processed: a source of morphometrics.parquet; reported: a row of a CSV of skipped or
    failed images. Printed lines are read by :func:`output_records`."""
    import pandas as pd

    records = []
    table = run.out / "morphometrics.parquet"
    if table.is_file():
        sources = pd.read_parquet(table, columns=["source"])["source"].unique()
        records += [Record(PROCESSED, s, "", table.name) for s in sources]
    for listing in sorted(run.out.glob("*.csv")) if run.out.is_dir() else []:
        if re.search(r"skip|fail|error", listing.name):
            frame = read_csv(listing)
            path_column = "path" if "path" in frame else "source"
            reasons = frame["reason"] if "reason" in frame else frame.iloc[:, -1]
            records += [
                Record(REPORTED, p, str(r), listing.name)
                for p, r in zip(frame[path_column], reasons)
            ]
    summary = {}
    found = re.search(r"(\d+) crops from (\d+) images", run.output)
    if found:
        summary["images segmented"] = int(found.group(2))
    return records, summary


def label_records(run: Run) -> tuple[list[Record], dict[str, int]]:
    from foramflow.label.store import STORE_FILE

    store = run.out / STORE_FILE
    if not store.is_file():
        return [], {}
    connection = sqlite3.connect(store)
    connection.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    try:
        rows = connection.execute(
            "SELECT roots.path, images.relpath FROM images JOIN roots ON roots.id = images.root_id"
        ).fetchall()
    finally:
        connection.close()
    records = [Record(PROCESSED, f"{root}/{relpath}", "", STORE_FILE) for root, relpath in rows]
    summary = {}
    found = re.search(r": (\d+) new images", run.output)
    if found:
        summary["new images"] = int(found.group(1))
    return records, summary


def name_variants(key: str) -> set[str]:
    """Ways a command may write the path ``key``: as is, or with an undecodable byte or a
    newline escaped or replaced."""
    raw = key.encode("utf-8", "surrogateescape")
    decoded = {
        key,
        raw.decode("utf-8", "replace"),
        raw.decode("utf-8", "backslashreplace"),
        raw.decode("utf-8", "replace").replace("\ufffd", "?"),
        key.encode("unicode_escape").decode("ascii"),
    }
    return {
        newline(text)
        for text in decoded
        for newline in (
            lambda s: s,
            lambda s: s.replace("\n", "\\n"),
            lambda s: s.replace("\n", "?"),
        )
    }


def names(path: str, variants: set[str]) -> bool:
    """True when ``path`` (relative or absolute) is one of ``variants`` or ends in one."""
    return any(path == v or path.endswith("/" + v) for v in variants)


def match_records(records: list[Record], keys: list[str]) -> Outcomes:
    variants = {key: name_variants(key) for key in keys}
    outcomes = Outcomes({key: [] for key in keys})
    for record in records:
        owners = [key for key in keys if names(str(record.path), variants[key])]
        if owners:
            outcomes.by_entry[owners[0]].append(record)
        else:
            outcomes.strangers.append(record)
    return outcomes


def output_records(run: Run, key: str) -> list[Record]:
    """What the printed output says of ``key`` before any traceback: a line naming it with a
    report word, or, for segment, its particle count."""
    records = []
    before_traceback = TRACEBACK.split(run.output, maxsplit=1)[0]
    for _, words in mentions(before_traceback, name_variants(key)):
        if REPORT_WORDS.search(words):
            reason = re.sub(r"\s*(?::\s*)+", ": ", words).strip(": ")
            records.append(Record(REPORTED, key, reason, "output"))
        elif run.command == "segment" and re.search(r"\d+ particles", words):
            records.append(Record(PROCESSED, key, "", "output"))
    return records


def mentions(text: str, variants: set[str]) -> list[tuple[str, str]]:
    """(line, the line without the path) for each line of ``text`` that names the path whole
    (not as a folder of another path); the path's first appearance in the line counts."""
    found: dict[int, tuple[int, str, str]] = {}
    for variant in variants:
        pattern = re.compile(r"(?:^|(?<=[/\s'\"]))" + re.escape(variant) + r"(?![\w/.-])")
        for match in pattern.finditer(text):
            start = text.rfind("\n", 0, match.start()) + 1
            if start in found and found[start][0] <= match.start():
                continue
            end = text.find("\n", match.end())
            end = len(text) if end < 0 else end
            path_start = max(text.rfind(c, start, match.start()) for c in " \t'\"") + 1
            path_start = max(path_start, start)
            words = text[start:path_start] + text[match.end() : end]
            found[start] = (match.start(), text[start:end], words)
    return [(line, words) for _, line, words in found.values()]


def problems(command: str, outcomes: Outcomes, expected: Mapping[str, Expected]) -> list[str]:
    """One line per entry that the run lost, counted twice, let in or handled wrongly."""
    lines = []
    for key, wanted in expected.items():
        allowed = wanted.allowed[command]
        records = outcomes.by_entry[key]
        got = outcomes.outcome(key)
        name = display_name(key)
        if not wanted.counted(command):
            if records:
                lines.append(f"{name}: counted ({got}), but it is {wanted.why}")
            continue
        if got is None:
            lines.append(f"{name}: lost: neither processed nor reported ({wanted.why})")
        elif got == "both":
            lines.append(f"{name}: both processed and reported")
        elif got not in allowed:
            reason = next((r.reason for r in records if r.reason), "")
            lines.append(
                f"{name}: {got}{f' ({reason})' if reason else ''}, expected "
                f"{' or '.join(sorted(allowed))} ({wanted.why})"
            )
        elif got == REPORTED and not any(r.reason for r in records):
            lines.append(f"{name}: reported without a reason")
        for source in {r.source for r in records if r.source != "output"}:
            n = sum(r.source == source for r in records)
            if n > 1:
                lines.append(f"{name}: listed {n} times in {source}")
    lines += [f"{r.path!r}: in {r.source}, not a corpus file" for r in outcomes.strangers]
    return lines


def cell(command: str, key: str, outcomes: Outcomes, wanted: Expected) -> str:
    """A table cell: the outcome, with the reason for a report, and ✗ where it is wrong."""
    got = outcomes.outcome(key)
    if got is None:
        text = IGNORED if not wanted.counted(command) else "LOST"
    elif got == REPORTED:
        reasons = [r.reason for r in outcomes.by_entry[key] if r.reason]
        reason = reasons[0] if reasons else "no reason"
        text = f"reported: {display_name(reason)[:70]}"
    else:
        text = got
    allowed = wanted.allowed[command]
    right = (got or IGNORED) in allowed if got != "both" else False
    return text.replace("|", "\\|") + ("" if right else " ✗")
