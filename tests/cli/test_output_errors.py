"""An output folder that cannot be written, and any deliberate error, is one line, not a
traceback; a bug keeps its traceback, and --debug shows it for every error."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.results import write_results
from foramflow.abundance import analysis, compare
from foramflow.cli import app
from foramflow.errors import ForamflowError, OutputError
from foramflow.io.files import prepare_output_dir

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def grey_png(path: Path, level: int = 128, size=(24, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, level, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def taken(tmp_path) -> Path:
    """A file where an output folder is asked for."""
    path = tmp_path / "taken"
    path.write_text("keep")
    return path


@pytest.fixture
def inputs(tmp_path):
    """Inputs each command accepts, so that only the output folder is wrong."""
    images = tmp_path / "images"
    for name in ("a", "b"):
        grey_png(images / "S1" / f"{name}.png")
    stacks = tmp_path / "stacks"
    planes = [grey_png(stacks / "obj1" / f"plane_{i}.png", 100 + 20 * i) for i in range(2)]
    from classify.conftest import write_bundle

    bundle = write_bundle(tmp_path / "bundle", input={"size": 16, "channels": 1})
    return {
        "images": images,
        "tray": grey_png(tmp_path / "tray.png"),
        "stacks": stacks,
        "planes": planes,
        "bundle": bundle,
        "results": write_results(tmp_path / "results"),
    }


COMMANDS = {
    "train": lambda i, out: ["train", i["images"], "--epochs", "1", "--out", out],
    "classify": lambda i, out: ["classify", i["bundle"], i["images"], "--out", out],
    "segment": lambda i, out: ["segment", i["tray"], "--out", out],
    "stack (folders)": lambda i, out: ["stack", i["stacks"], "--out", out],
    "stack (one)": lambda i, out: ["stack", *i["planes"], "--out", out / "fused.png"],
    "abundance": lambda i, out: ["abundance", i["results"], "--out", out],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_that_is_a_file_is_one_error_line(command, inputs, taken):
    result = invoke(*COMMANDS[command](inputs, taken))
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [f"error: {taken}: is a file, not a folder"]
    assert taken.read_text() == "keep"


def test_an_out_below_a_file_cannot_be_created(inputs, taken):
    result = invoke("abundance", inputs["results"], "--out", taken / "sub")
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"error: {taken / 'sub'}: cannot create the folder (Not a directory)"
    ]


def refuse_files_in(monkeypatch, folder: Path, code: int) -> None:
    """The operating system refuses to create a file in ``folder`` (read-only, no permission);
    simulated, since a test may run as root, whom permission bits do not stop."""
    real_open = os.open

    def refusing_open(path, *args, **kwargs):
        if Path(path).parent == folder:
            raise OSError(code, os.strerror(code), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_an_unwritable_out_is_one_error_line(inputs, tmp_path, monkeypatch, code):
    out = tmp_path / "out"
    refuse_files_in(monkeypatch, out, code)
    result = invoke("abundance", inputs["results"], "--out", out)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"error: {out}: cannot write in this folder ({os.strerror(code)})"
    ]


def test_prepare_output_dir_creates_parents_and_leaves_no_probe(tmp_path):
    out = prepare_output_dir(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []
    assert prepare_output_dir(out) == out  # an existing folder is fine


def test_prepare_output_dir_refuses_an_unwritable_folder(tmp_path, monkeypatch):
    refuse_files_in(monkeypatch, tmp_path / "out", errno.EACCES)
    with pytest.raises(OutputError, match="cannot write in this folder"):
        prepare_output_dir(tmp_path / "out")


def test_a_full_disk_is_one_error_line_naming_the_file(inputs, tmp_path, monkeypatch):
    def disk_full(self, path, *args, **kwargs):
        Path(path).write_text("sample,")  # a first block fits, the rest does not
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    out = tmp_path / "out"
    result = invoke("abundance", inputs["results"], "--out", out)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "error" in line]
    assert errors == [f"error: {out / 'class_counts.csv'}: No space left on device"]
    assert list(out.iterdir()) == []  # no truncated table, no temporary file


def fail_reading_human_counts(monkeypatch, err: BaseException) -> None:
    def read_human_counts(path):
        raise err

    monkeypatch.setattr(compare, "read_human_counts", read_human_counts)


def test_a_foramflow_error_is_one_line(inputs, tmp_path, monkeypatch):
    fail_reading_human_counts(monkeypatch, ForamflowError("human.csv: row [3] is broken"))
    human = tmp_path / "h.csv"
    human.write_text("sample\n")
    result = invoke("abundance", inputs["results"], "--out", tmp_path / "o", "--human", human)
    assert result.exit_code == 2
    assert result.output == "error: human.csv: row [3] is broken\n"


@pytest.mark.parametrize(
    "err", [RuntimeError("boom"), OSError(errno.EIO, "Input/output error")], ids=repr
)
def test_an_unexpected_error_keeps_its_traceback(inputs, tmp_path, monkeypatch, err):
    def write_tables(result, out_dir):
        raise err

    monkeypatch.setattr(analysis, "write_tables", write_tables)
    result = invoke("abundance", inputs["results"], "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert result.exception is err
    assert "error:" not in result.output


def test_debug_keeps_the_traceback_of_a_foramflow_error(inputs, tmp_path, monkeypatch):
    err = ForamflowError("human.csv: row 3 is broken")
    fail_reading_human_counts(monkeypatch, err)
    human = tmp_path / "h.csv"
    human.write_text("sample\n")
    result = invoke(
        "--debug", "abundance", inputs["results"], "--out", tmp_path / "o", "--human", human
    )
    assert result.exit_code == 1
    assert result.exception is err


def test_the_console_script_prints_one_line_or_with_debug_the_traceback(inputs, taken):
    def run(*args):
        command = [sys.executable, "-c", "from foramflow.cli import app; app()", *args]
        return subprocess.run(command, capture_output=True, text=True, env=os.environ)

    args = ["abundance", str(inputs["results"]), "--out", str(taken)]
    plain = run(*args)
    assert plain.returncode == 2
    assert plain.stderr.splitlines() == [f"error: {taken}: is a file, not a folder"]
    debug = run("--debug", *args)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "OutputError" in debug.stderr
