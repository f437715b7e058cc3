"""`foramflow train project.xml`: the images a person labelled, and predictions only when asked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from foramflow.cli import app
from foramflow.io.particletrieur import ParticleRecord, write_project
from image_sets import write_shape_set

runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, set[str], set[str]]:
    """A project of 3 classes: 8 images each labelled by hand (half validated), 2 each
    predicted (tagged auto) as the wrong class; (file, hand-labelled, predicted paths)."""
    root = tmp_path_factory.mktemp("pt")
    write_shape_set(root / "images", n_per_class=10)
    records, by_hand, predicted = [], set(), set()
    classes = ["bar", "disc", "ring"]
    for k, name in enumerate(classes):
        for i, path in enumerate(sorted((root / "images" / name).glob("*.png"))):
            if i < 8:
                who = {"validated_by": "Zoë Müller"} if i % 2 else {"classifier": "ross"}
                records.append(ParticleRecord(path=path, label=name, **who))
                by_hand.add(str(path))
            else:
                wrong = classes[(k + 1) % 3]
                records.append(
                    ParticleRecord(
                        path=path, label=wrong, classifier="cnn", tags=["auto"],
                        classifications={wrong: 0.9},
                    )
                )  # fmt: skip
                predicted.add(str(path))
    xml_path = root / "project.xml"
    write_project(xml_path, records, [])
    return xml_path, by_hand, predicted


def _trained_on(xml_path: Path, out: Path, *extra: str) -> set[str]:
    result = runner.invoke(
        app,
        [
            "train", str(xml_path), "--model", "base_cyclic", "--input-size", "16",
            "--epochs", "1", "--min-per-class", "2", "--workers", "1", "--batch-size", "32",
            "--out", str(out), *extra,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return set(pd.read_csv(out / "split.csv")["path"])


def test_trains_on_hand_labels_only(project, tmp_path):
    xml_path, by_hand, _ = project
    assert _trained_on(xml_path, tmp_path / "run") == by_hand


def test_predictions_when_asked(project, tmp_path):
    xml_path, by_hand, predicted = project
    used = _trained_on(xml_path, tmp_path / "run", "--include-predictions")
    assert used == by_hand | predicted
