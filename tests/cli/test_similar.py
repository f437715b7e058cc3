"""``foramflow train --model efficientnet_lite0_tl`` and ``foramflow similar`` end to end."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from foramflow.cli import app
from image_sets import write_shape_set


def rows(output: str) -> list[list[str]]:
    """The tab-separated result lines of ``similar`` (header left out)."""
    lines = [line.split("\t") for line in output.splitlines() if line.count("\t") == 4]
    return lines[1:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("similar")
    data = write_shape_set(root / "data", n_per_class=15, size=40)
    run, cache = root / "run", root / "cache"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(data),
            "--out",
            str(run),
            "--model",
            "efficientnet_lite0_tl",
            "--no-cyclic",
            "--input-size",
            "32",
            "--epochs",
            "5",
            "--min-per-class",
            "10",
            "--workers",
            "1",
            "--feature-cache",
            str(cache),
        ],
    )
    assert result.exit_code == 0, result.output
    return data, run, cache


def test_train_routes_transfer_models_and_records_the_options(trained):
    _, run, cache = trained
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "efficientnet_lite0_tl" and config["cyclic"] is False
    meta = json.loads((run / "bundle" / "model.json").read_text())
    assert meta["model"]["params"]["cyclic"] is False
    chosen = config["precision_choice"]["features"]["precision"]  # timed or from the cache
    assert meta["transfer"]["extractor"]["precision"] == chosen
    assert meta["transfer"]["feature_cache"].startswith(str(cache))


@pytest.mark.parametrize("source", ["bundle", "cache"])
def test_an_image_of_the_set_finds_itself_first_then_its_class(trained, source):
    data, run, cache = trained
    image = sorted((data / "ring").iterdir())[3]
    where = run / "bundle" if source == "bundle" else cache
    result = CliRunner().invoke(app, ["similar", str(where), str(image), "-k", "4"])
    assert result.exit_code == 0, result.output
    found = rows(result.output)
    assert [r[1] for r in found] == ["1", "2", "3", "4"]
    assert found[0][4] == str(image) and float(found[0][2]) > 0.999
    assert found[0][3] == "ring"
    similarities = [float(r[2]) for r in found]
    assert similarities == sorted(similarities, reverse=True)


def test_unreadable_images_are_reported_and_the_others_listed(trained, tmp_path):
    data, run, _ = trained
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    good = sorted((data / "disc").iterdir())[0]
    result = CliRunner().invoke(app, ["similar", str(run / "bundle"), str(broken), str(good)])
    assert result.exit_code == 1
    assert len(rows(result.output)) == 10
    assert "broken.png" in result.output


def test_wrong_sources_and_weights_are_one_line_errors(trained, tmp_path):
    data, run, _ = trained
    image = str(sorted((data / "bar").iterdir())[0])
    runner = CliRunner()
    result = runner.invoke(app, ["similar", str(tmp_path), image])
    assert result.exit_code == 2
    assert "neither a model bundle nor a feature cache" in " ".join(result.output.split())
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(1)}, other)
    result = runner.invoke(app, ["similar", str(run / "bundle"), image, "--weights", str(other)])
    assert result.exit_code == 2
    assert "not the weights file these features were computed with" in " ".join(
        result.output.split()
    )


def test_resnet50_needs_a_weights_file(trained, tmp_path):
    data, _, _ = trained
    result = CliRunner().invoke(
        app, ["train", str(data), "--out", str(tmp_path / "r"), "--model", "resnet50_tl"]
    )
    assert result.exit_code == 2
    assert "--weights PATH" in " ".join(result.output.split())
