"""A ParticleTrieur project through the label store and back, without losing a label.

ParticleTrieur (models/project/Particle.java) tags a network's classification ``auto`` and
drops the tag when a person labels; it sets ``val_by`` only when someone ticks "validated";
the classifications' id is the person (or network) that classified; ``index1`` is 0 when
the depth is unknown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from foramflow.cli import app
from foramflow.io.particletrieur import read_project
from foramflow.label import export
from foramflow.label.store import LabelStore

runner = CliRunner()

SAMPLE = "Échantillon β 30cm"


def _image(code: str, *, by: str = "", val_by: str = "", auto=False, scores=None, depth="0.0"):
    scores = scores or {code: 1.0}
    items = "".join(
        f"<classification><code>{c}</code><value>{v}</value></classification>"
        for c, v in scores.items()
    )
    return (
        f"<source><sampleID>{SAMPLE}</sampleID><index1>{depth}</index1>"
        f"<resolution>0.0</resolution></source><val_by>{val_by}</val_by>"
        f'<classifications id="{by}">{items}</classifications>'
        f"<tags>{'<tag>auto</tag>' if auto else ''}</tags>"
    )


# name: (the <image> body without its file name, what the store must hold)
IMAGES = {
    "validated.png": (_image("G_ruber", by="Zoë Müller", val_by="Zoë Müller", depth="12.5"),
                      ("G_ruber", "Zoë Müller", None)),
    "by_hand.png": (_image("B_spissa", by="ross"), ("B_spissa", "ross", None)),
    "by_hand_2.png": (_image("G_ruber", by="ross"), ("G_ruber", "ross", None)),
    "anonymous.png": (_image("G_ruber"), ("G_ruber", None, None)),
    "hand_unsure.png": (_image("unsure", by="ross"), ("unsure", "ross", None)),
    "predicted.png": (
        _image("B_spissa", by="cnn_v1", auto=True, scores={"G_ruber": 0.15, "B_spissa": 0.85}),
        (None, None, ("B_spissa", 0.85, "cnn_v1")),
    ),
    "predicted_unsure.png": (
        _image("unsure", by="cnn_v1", auto=True,
               scores={"G_ruber": 0.45, "B_spissa": 0.4, "unsure": 1.0}),
        (None, None, ("G_ruber", 0.45, "cnn_v1")),
    ),
    "unlabelled.png": (_image("unlabeled", by="default"), (None, None, None)),
}  # fmt: skip


@pytest.fixture
def pt_project(tmp_path: Path, make_image) -> Path:
    """A project file as ParticleTrieur writes one, beside its images."""
    folder = tmp_path / "pt"
    for i, name in enumerate(IMAGES):
        make_image(folder / "images" / name, np.full((8, 8), i / 10))
    body = "".join(
        f"<image>{xml.replace('<source>', f'<source><filename>images/{name}</filename>')}</image>"
        for name, (xml, _) in IMAGES.items()
    )
    taxa = "".join(
        f"<taxon><code>{c}</code><isClass>{'false' if c in ('unlabeled', 'unsure') else 'true'}"
        "</isClass></taxon>"
        for c in ("unlabeled", "unsure", "G_ruber", "B_spissa")
    )
    xml_path = folder / "project.xml"
    xml_path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><project version="2.4.1"><taxons>{taxa}'
        f"</taxons><images>{body}</images></project>",
        encoding="utf-8",
    )
    return xml_path


def _by_name(store: LabelStore) -> dict[str, dict]:
    paths = store.image_paths()
    return {paths[row["id"]].name: dict(row) for row in store.all_rows()}


def _labels(store: LabelStore) -> dict[str, tuple]:
    """What a round trip must keep: label, validator, prediction, sample, depth."""
    return {
        name: (
            row["label"], row["validated_by"], row["pred_label"], row["pred_score"],
            row["pred_model"], row["sample"], row["depth_cm"],
        )
        for name, row in _by_name(store).items()
    }  # fmt: skip


def test_hand_labels_are_labels_and_auto_ones_predictions(pt_project: Path, tmp_path: Path):
    store = LabelStore(tmp_path / "store")
    assert export.import_particletrieur(store, pt_project) == len(IMAGES)
    rows = _by_name(store)
    for name, (_, (label, by, prediction)) in IMAGES.items():
        row = rows[name]
        assert (row["label"], row["validated_by"]) == (label, by), name
        got = (row["pred_label"], row["pred_score"], row["pred_model"])
        assert got == (prediction or (None, None, None)), name
        assert row["sample"] == SAMPLE
    assert rows["validated.png"]["depth_cm"] == 12.5
    assert rows["by_hand.png"]["depth_cm"] is None  # index1 0.0: unknown
    assert rows["by_hand.png"]["resolution"] is None


def test_import_then_training_set_keeps_every_hand_label(pt_project: Path, tmp_path: Path):
    project = tmp_path / "labels"
    result = runner.invoke(
        app, ["label", str(project), "--import-xml", str(pt_project), "--no-serve"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "train"
    result = runner.invoke(app, ["label-export", str(project), str(out)])
    assert result.exit_code == 0, result.output
    written = {p.parent.name: sorted(q.name for q in p.parent.iterdir()) for p in out.glob("*/*")}
    assert written == {
        "G_ruber": [f"{SAMPLE}__anonymous.png", f"{SAMPLE}__by_hand_2.png",
                    f"{SAMPLE}__validated.png"],
        "B_spissa": [f"{SAMPLE}__by_hand.png"],
    }  # fmt: skip


def test_export_marks_predictions_auto_and_labels_validated(pt_project: Path, tmp_path: Path):
    store = LabelStore(tmp_path / "store")
    export.import_particletrieur(store, pt_project)
    xml_path = tmp_path / "again" / "project.xml"
    xml_path.parent.mkdir()
    export.export_particletrieur(store, xml_path)
    records = {r.path.name: r for r in read_project(xml_path)[0]}
    assert records["predicted.png"].predicted
    assert records["predicted.png"].classifier == "cnn_v1"
    assert not records["predicted.png"].validated_by
    assert not records["by_hand.png"].predicted
    assert records["by_hand.png"].validated_by == "ross"
    assert records["by_hand.png"].depth is None
    assert "<index1>" not in xml_path.read_text().split("by_hand.png")[1].split("</source>")[0]


def test_particletrieur_round_trips_are_exact(pt_project: Path, tmp_path: Path):
    first = LabelStore(tmp_path / "first")
    export.import_particletrieur(first, pt_project)
    top = pt_project.parent / "images" / "top.png"  # a known depth of 0: a core top
    top.write_bytes((pt_project.parent / "images" / "by_hand.png").read_bytes())
    first.add_image_records(
        [
            {
                "path": top,
                "depth_cm": 0.0,
                "sample": SAMPLE,
                "label": "G_ruber",
                "validated_by": "Zoë",
            }
        ]
    )
    xml_path = tmp_path / "round" / "project.xml"
    xml_path.parent.mkdir()
    export.export_particletrieur(first, xml_path)
    second = LabelStore(tmp_path / "second")
    export.import_particletrieur(second, xml_path)
    assert _labels(second) == _labels(first)
    assert _labels(first)["top.png"][-1] == 0.0

    export.export_particletrieur(second, tmp_path / "round" / "again.xml")
    third = LabelStore(tmp_path / "third")
    export.import_particletrieur(third, tmp_path / "round" / "again.xml")
    assert _labels(third) == _labels(first)
