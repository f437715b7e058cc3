import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
from typer.testing import CliRunner

from foramflow.cli import app

COMMAND = [sys.executable, "-c", "from foramflow.cli import app; app()", "classify"]


def test_classify_command_prints_a_summary_per_sample(bundle, tree, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["classify", str(bundle), str(tree), "--out", str(out), "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    for sample in ("S1", "S2", "S3"):
        assert sample in result.output
    assert "13 images, 1 unsure, 0 errors" in " ".join(result.output.split())
    assert (out / "predictions.parquet").is_file()
    assert "Faster" not in result.output  # no one-view bundle beside this one


def test_classify_names_the_runs_faster_bundle(kit, tree, tmp_path):
    run = tmp_path / "run"
    bundle = kit.write_bundle(run / "bundle", metrics={"accuracy": 0.797})
    fast = kit.write_bundle(run / "bundle_fast", metrics={"accuracy": 0.792})
    runner = CliRunner()
    result = runner.invoke(
        app, ["classify", str(bundle), str(tree), "--out", str(tmp_path / "a"), "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"Faster: {fast}" in said
    assert "(validation top-1 79.2% against 79.7%)" in said
    result = runner.invoke(
        app, ["classify", str(fast), str(tree), "--out", str(tmp_path / "b"), "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "Faster" not in result.output


def test_bad_threshold_and_bad_bundle_are_one_line_errors(bundle, tree, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["classify", str(bundle), str(tree), "--out", str(tmp_path / "o"), "--threshold", "2"]
    )
    assert result.exit_code == 2
    assert "threshold must lie in (0.5, 1.0]" in " ".join(result.output.split())
    result = runner.invoke(app, ["classify", str(tree), str(tree), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "not a model bundle" in " ".join(result.output.split())


def test_corrupt_and_empty_files_are_listed_at_the_end(bundle, tree, tmp_path):
    (tree / "S1" / "zero.png").write_bytes(b"")
    (tree / "S2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = CliRunner().invoke(
        app, ["classify", str(bundle), str(tree), "--out", str(tmp_path / "o"), "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "2 image(s) could not be read" in output
    assert "S1/zero.png: file is empty" in output
    assert "S2/broken.png" in output


def test_sigkill_then_restart_classifies_every_image_exactly_once(kit, bundle, tmp_path):
    images = tmp_path / "images"
    for s in range(3):
        for i in range(100):
            kit.write_grey_png(images / f"S{s}" / f"{i:04d}.png", kit.dark if i % 5 else kit.bright)
    out = tmp_path / "out"
    command = [*COMMAND, str(bundle), str(images), "--out", str(out)]
    command += ["--workers", "0", "--chunk-size", "3", "--batch-size", "2"]

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    written = 0
    while process.poll() is None and written < 5:
        time.sleep(0.002)
        written = len(list(out.glob("chunks/[0-9]*.parquet")))
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert written >= 5
    assert not (out / "predictions.parquet").exists()

    subprocess.run(command, check=True, capture_output=True)
    info = json.loads((out / "run.json").read_text())
    assert 3 * written <= info["n_resumed"] < 300
    frame = pd.read_parquet(out / "predictions.parquet")
    assert frame["path"].is_unique
    expected = {f"S{s}/{i:04d}.png" for s in range(3) for i in range(100)}
    assert set(frame["path"]) == expected
    counts = pd.read_csv(out / "counts.csv", index_col="sample")
    assert counts["dark"].tolist() == [80] * 3
    assert counts["bright"].tolist() == [20] * 3
    assert not any(name.startswith(".tmp-") for name in os.listdir(out))
