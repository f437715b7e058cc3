"""The train / predict commands as a user runs them."""

import json
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from foramflow.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, shape_set):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(shape_set),
            "--input-size",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--min-per-class",
            "10",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out, result


def test_train_prints_the_report_path(cli_run):
    out, result = cli_run
    assert f"Report: {out / 'evaluation' / 'report.html'}" in result.output


def test_predict_uses_the_bundle_without_torch(cli_run, shape_set, tmp_path):
    out, _ = cli_run
    images = sorted((shape_set / "disc").glob("*.png"))[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    code = (
        "import sys; from foramflow.cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_ABSENT')\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "predict",
            str(out / "bundle"),
            *map(str, images),
            str(broken),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1  # one image could not be read
    assert "TORCH_ABSENT" in done.stdout
    lines = [line.split("\t") for line in done.stdout.splitlines() if "\t" in line]
    assert [line[0] for line in lines] == [*map(str, images), str(broken)]
    labels = json.loads((out / "bundle" / "model.json").read_text())["labels"]
    assert all(line[1] in {*labels, "unsure"} for line in lines[:2])
    assert lines[2][1] == "error" and "broken.png" not in lines[2][2]  # reason, path is col 0


def test_predict_threshold_zero_always_names_a_class(cli_run, shape_set):
    out, _ = cli_run
    image = sorted((shape_set / "ring").glob("*.png"))[0]
    result = runner.invoke(app, ["predict", str(out / "bundle"), str(image), "--threshold", "0"])
    assert result.exit_code == 0
    assert result.output.split("\t")[1] in {"bar", "disc", "ring"}


def test_export_to_zip_and_predict_from_it(cli_run, tmp_path, shape_set):
    out, _ = cli_run
    archive = tmp_path / "model.zip"
    result = runner.invoke(app, ["export", str(out), "--out", str(archive)])
    assert result.exit_code == 0, result.output
    image = sorted((shape_set / "bar").glob("*.png"))[0]
    from_zip = runner.invoke(app, ["predict", str(archive), str(image), "--threshold", "0"])
    from_folder = runner.invoke(
        app, ["predict", str(out / "bundle"), str(image), "--threshold", "0"]
    )
    assert from_zip.output == from_folder.output
    with zipfile.ZipFile(archive) as zipped:
        written = set(zipped.namelist())
    assert written == {p.name for p in (out / "bundle").iterdir()}  # nothing left behind


def test_evaluate_on_a_labelled_folder(cli_run, shape_set, tmp_path):
    out, _ = cli_run
    result = runner.invoke(
        app, ["evaluate", str(out / "bundle"), str(shape_set), "--out", str(tmp_path / "eval")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "eval" / "report.html").is_file()
    assert "accuracy" in result.output


def test_bad_options_give_clear_errors(tmp_path, shape_set):
    result = runner.invoke(app, ["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "nowhere' does not exist" in result.output
    result = runner.invoke(
        app, ["train", str(shape_set), "--input-size", "33", "--out", str(tmp_path / "r2")]
    )
    assert result.exit_code == 2 and "even" in result.output
    config = tmp_path / "c.yaml"
    config.write_text("data: x\nout: y\nfliters: 8\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2 and "fliters" in result.output
    result = runner.invoke(
        app, ["train", str(shape_set), "--class-weights", "equal", "--out", str(tmp_path / "r3")]
    )
    assert result.exit_code == 2 and "'--class-weights'" in result.output


def test_yaml_config_with_command_line_override(tmp_path, shape_set):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {shape_set}\nout: {tmp_path / 'run'}\ninput_size: 32\n"
        "epochs: 1\nmin_per_class: 10\nworkers: 1\nbatch_size: 32\n"
    )
    result = runner.invoke(
        app, ["train", "--config", str(config), "--filters", "4", "--class-weights", "none"]
    )
    assert result.exit_code == 0, result.output
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "filters: 4" in saved and "input_size: 32" in saved
    assert "class_weights: none" in saved


def test_corrupt_training_image_is_reported_and_skipped(tmp_path):
    from image_sets import write_shape_set

    data = write_shape_set(tmp_path / "data", n_per_class=12)
    (data / "disc" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = _train_small(data, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "zz_corrupt.png" in result.output
    skipped = (tmp_path / "run" / "skipped_images.csv").read_text()
    assert "zz_corrupt.png" in skipped


def _train_small(data, out, *extra):
    return runner.invoke(
        app,
        [
            "train",
            str(data),
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--min-per-class",
            "5",
            "--workers",
            "1",
            "--batch-size",
            "16",
            "--out",
            str(out),
            *extra,
        ],
    )


def test_dangling_links_loops_odd_names_and_oversize_images_are_listed_not_fatal(tmp_path):
    import os

    from image_sets import write_shape_set

    data = write_shape_set(tmp_path / "data", n_per_class=8)
    (data / "disc" / "gone.png").symlink_to("nowhere.png")
    (data / "ring" / "loop1.png").symlink_to("loop2.png")
    (data / "ring" / "loop2.png").symlink_to("loop1.png")
    with open(os.fsencode(data / "bar") + b"/caf\xe9.png", "wb") as handle:
        handle.write((data / "bar" / "bar_000.png").read_bytes())
    (data / "bar" / "x.jpg").mkdir()
    Image.new("L", (50, 50)).save(data / "ring" / "big.png")
    result = _train_small(data, tmp_path / "run", "--max-pixels", "2000")
    assert result.exit_code == 0, result.output
    output = "".join(result.output.split())
    for shown in (
        "gone.png:danglingsymboliclink",
        "loop1.png:symboliclinkloop",
        "caf\\xe9.png:filenameisnotvalidUTF-8",
        "big.png:imageof50×50pixels",
    ):
        assert shown in output
    skipped = pd.read_csv(tmp_path / "run" / "skipped_images.csv")
    assert sorted(skipped["path"].map(lambda p: p.rsplit("/", 1)[1])) == [
        "big.png",
        "caf\\xe9.png",
        "gone.png",
        "loop1.png",
        "loop2.png",
    ]
    assert "x.jpg" not in result.output
    assert len(pd.read_csv(tmp_path / "run" / "split.csv")) == 24


def test_the_train_step_from_python_returns_the_run(tmp_path):
    from foramflow import train
    from foramflow.progress import Recorded
    from image_sets import write_shape_set

    data = write_shape_set(tmp_path / "data", n_per_class=8)
    (data / "disc" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = train(
        data,
        tmp_path / "run",
        model="base_cyclic",
        input_size=32,
        epochs=1,
        batch_size=16,
        min_per_class=5,
        workers=1,
        progress=Recorded(),
    )
    assert result.out == tmp_path / "run"
    assert (result.bundle / "model.onnx").is_file()
    assert result.report == tmp_path / "run" / "evaluation" / "report.html"
    assert result.metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result.classes == ["bar", "disc", "ring"]
    assert [path.rsplit("/", 1)[1] for path in result.skipped] == ["zz_corrupt.png"]


def test_a_top_run_names_its_faster_bundle(tmp_path, shape_set):
    out = tmp_path / "top"
    result = runner.invoke(
        app,
        [
            "train", str(shape_set), "--model", "efficientnet_lite0_top", "--input-size", "32",
            "--epochs", "1", "--min-per-class", "10", "--workers", "1", "--precision", "fp32",
            "--feature-cache", str(tmp_path / "cache"), "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Faster bundle: {out / 'bundle_fast'} (reads each image once" in result.output
    image = next(p for p in shape_set.rglob("*.png"))
    predicted = runner.invoke(app, ["predict", str(out / "bundle_fast"), str(image)])
    assert predicted.exit_code == 0 and image.name in predicted.output


def test_predict_escapes_control_characters_in_file_names(cli_run, shape_set, tmp_path):
    """A file name cannot add a line or a column to predict's output."""
    out, _ = cli_run
    forged = tmp_path / "a\nb\tdisc\t1.0000\x1b[2J.png"
    forged.write_bytes(sorted((shape_set / "ring").glob("*.png"))[0].read_bytes())
    result = runner.invoke(app, ["predict", str(out / "bundle"), str(forged), "--threshold", "0"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and len(lines[0].split("\t")) == 3
    assert lines[0].split("\t")[0] == str(forged).replace("\n", "\\n").replace("\t", "\\t").replace(
        "\x1b", "\\x1b"
    )
