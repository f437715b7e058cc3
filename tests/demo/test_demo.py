"""The demo end to end on a tiny core, and its scoring against the truth."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import foramflow.demo
from foramflow.cli import app
from foramflow.demo import QUICK, TINY, DemoFolderError, run_demo
from foramflow.demo.report import FIGURES
from foramflow.demo.scores import NO_MATCH, abundance_errors, match_to_truth
from foramflow.progress import Recorded


class CountedTask:
    def __init__(self, owner):
        self.owner = owner

    def advance(self, n=1, **fields):
        pass

    def update(self, *, total=None, completed=None, **fields):
        pass

    def done(self):
        self.owner.done_calls[self] = self.owner.done_calls.get(self, 0) + 1


class CountedProgress(Recorded):
    """Recorded messages, and how often each task was closed: the command line's progress
    bars take one close per task."""

    def __init__(self):
        super().__init__()
        self.done_calls: dict[CountedTask, int] = {}
        self.opened = 0

    def task(self, description, total, **fields):
        self.opened += 1
        return CountedTask(self)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    progress = CountedProgress()
    report = run_demo(out, profile=TINY, progress=progress)
    return out, report, progress


@pytest.fixture(scope="module")
def demo(demo_run):
    out, report, _ = demo_run
    return out, report


def test_every_task_the_demo_opens_is_closed_once(demo_run):
    _, _, progress = demo_run
    assert progress.opened >= 8
    assert sorted(set(progress.done_calls.values())) == [1]
    assert len(progress.done_calls) == progress.opened


def run_command(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_demo_tables_have_the_columns_of_segment_and_classify(demo, tmp_path):
    from foramflow.data.synthetic.slides import PIXEL_SIZE_UM
    from foramflow.demo.pipeline import MIN_AREA_UM2

    out, _ = demo
    crops, classified = tmp_path / "crops", tmp_path / "classify"
    trays = out / "core" / "samples"
    run_command(
        "segment",
        trays,
        "--out",
        crops,
        "--pixels-per-mm",
        1000 / PIXEL_SIZE_UM,
        "--min-area-um2",
        MIN_AREA_UM2,
    )
    run_command("classify", out / "run" / "bundle", crops, "--out", classified)
    for command_table, demo_table in (
        (crops / "morphometrics.parquet", out / "crops" / "morphometrics.parquet"),
        (classified / "predictions.parquet", out / "classify" / "predictions.parquet"),
    ):
        wanted = pd.read_parquet(command_table).dtypes.to_dict()
        found = pd.read_parquet(demo_table).dtypes.to_dict()
        assert {name: found.get(name) for name in wanted} == wanted, demo_table.name
    demo_crops = pd.read_parquet(out / "crops" / "morphometrics.parquet")
    command_crops = pd.read_parquet(crops / "morphometrics.parquet")
    assert demo_crops["path"].tolist() == command_crops["path"].tolist()


def test_every_stage_finishes_and_is_recorded(demo):
    out, report = demo
    state = json.loads((out / "demo.json").read_text())
    assert state["profile"] == TINY.to_dict()
    assert list(state["stages"]) == [
        "core",
        "stacks",
        "crops",
        "training_set",
        "run",
        "classify",
        "evaluation",
        "abundance",
    ]
    assert report == out / "report.html"
    assert (out / "run" / "bundle" / "model.onnx").is_file()
    assert (out / "abundance" / "report.html").is_file()


def test_core_and_segmentation_agree_with_the_truth(demo):
    out, _ = demo
    truth = pd.read_csv(out / "core" / "truth_particles.csv")
    assert len(truth) == TINY.n_samples * TINY.particles_per_sample
    crops = pd.read_parquet(out / "crops" / "morphometrics.parquet")
    written = sorted(p.relative_to(out / "crops").as_posix() for p in out.glob("crops/*/*/*.png"))
    assert written == sorted(crops["path"])  # one crop file per segmented particle, nothing else
    matched = crops[crops["truth_id"] >= 0]
    assert not matched.duplicated(["source", "truth_id"]).any()
    # Particles on synthetic trays never touch: nearly all are found, each as one crop.
    assert len(matched) >= 0.9 * len(truth)
    true_class = truth.set_index(["file", "id"])["class"]
    expected = [true_class[(s, i)] for s, i in zip(matched["source"], matched["truth_id"])]
    assert matched["true_class"].tolist() == expected


def test_focus_stacking_beats_every_single_plane(demo):
    out, _ = demo
    stacks = pd.read_csv(out / "stacks" / "stacks.csv")
    assert len(stacks) == TINY.n_zstacks
    assert (stacks["fused_error"] < stacks["best_plane_error"]).all()


def test_every_crop_is_classified_once(demo):
    out, _ = demo
    crops = pd.read_parquet(out / "crops" / "morphometrics.parquet")
    counts = pd.read_csv(out / "classify" / "counts.csv", index_col="sample")
    assert counts.drop(columns="depth_m").to_numpy().sum() == len(crops)
    per_sample = crops.groupby("sample").size()
    assert counts.drop(columns="depth_m").sum(axis=1).reindex(per_sample.index).tolist() == (
        per_sample.tolist()
    )
    depths = pd.read_csv(out / "core" / "truth_abundance.csv", index_col="sample")["depth_m"]
    assert np.allclose(counts["depth_m"], depths.reindex(counts.index))
    scored = json.loads((out / "demo.json").read_text())["stages"]["evaluation"]["summary"]
    assert scored["crops_scored"] == int((crops["true_class"] != NO_MATCH).sum())


def test_report_embeds_every_figure_and_states_the_error(demo):
    out, report = demo
    page = report.read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert "percentage points" in page
    errors = pd.read_csv(out / "abundance" / "errors_vs_truth.csv", index_col="estimate")
    assert {"human count", "particles on the trays", "raw", "acc", "em"} <= set(errors.index)
    human = errors.at["human count", "all"]
    assert f"{human:.2f} points" in page
    # 300-specimen counts of a known assemblage: a few points off, never tens.
    assert 0 < human < 6


def test_a_rerun_reuses_finished_stages(demo):
    out, report = demo
    before = (out / "run" / "bundle" / "model.onnx").stat().st_mtime_ns
    progress = Recorded()
    assert run_demo(out, profile=TINY, progress=progress) == report
    assert sum("reused" in m for m in progress.messages) == 8
    assert (out / "run" / "bundle" / "model.onnx").stat().st_mtime_ns == before


def test_other_folders_are_refused(demo, tmp_path):
    out, _ = demo
    with pytest.raises(DemoFolderError, match="'tiny' profile"):
        run_demo(out, profile=QUICK, progress=Recorded())
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DemoFolderError, match="not a demo folder"):
        run_demo(tmp_path, profile=TINY, progress=Recorded())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_prints_the_report_path_last(demo, monkeypatch, tmp_path):
    out, report = demo
    monkeypatch.setattr(foramflow.demo, "QUICK", TINY)
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == f"Report: {report.resolve()}"
    (tmp_path / "notes.txt").write_text("mine")
    refused = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert refused.exit_code == 2
    assert re.search(r"not a demo folder", refused.output)


def test_match_to_truth_takes_the_nearest_centre_within_half_a_radius():
    truth = pd.DataFrame(
        {"id": [1, 2], "class": ["spherical", "fragment"], "x": [10.0, 50.0], "y": [10.0, 10.0]}
    ).assign(radius_px=[8.0, 8.0])
    particles = pd.DataFrame(
        {"centroid_x_px": [11.0, 47.0, 30.0], "centroid_y_px": [9.0, 10.0, 10.0]}, index=[5, 6, 7]
    )
    matched = match_to_truth(particles, truth)
    assert matched["truth_id"].tolist() == [1, 2, -1]
    assert matched["true_class"].tolist() == ["spherical", "fragment", NO_MATCH]
    assert matched.index.tolist() == [5, 6, 7]


def test_abundance_errors_in_percentage_points():
    truth = pd.DataFrame(
        {"sample": ["A", "A", "B", "B"], "taxon": ["x", "y"] * 2, "fraction": [0.5, 0.5, 0.2, 0.8]}
    )
    estimate = truth.assign(fraction=[0.6, 0.4, 0.2, 0.8])
    errors = abundance_errors({"guess": estimate, "truth": truth}, truth)
    assert errors.loc["guess"].tolist() == pytest.approx([5.0, 5.0, 5.0])
    assert errors.loc["truth"].tolist() == pytest.approx([0.0, 0.0, 0.0])
