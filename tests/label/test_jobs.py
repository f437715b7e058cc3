"""The app's jobs and their routes: train, classify, count, statistics.

Training runs for real on the 12 tiny images of the fixtures (16 pixels, a few epochs), in
its own process, as the app runs it; classification and counts use the ONNX bundle of the
fixtures, whose answers are known (bright above mean intensity 0.5).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from foramflow.abundance.steps import estimate_abundance
from foramflow.bundle import Bundle
from foramflow.bundle.validation import read_validation
from foramflow.label.app import create_app
from foramflow.label.job_worker import JobProgress, images_listing, per_sample
from foramflow.label.jobs import Jobs, now_iso, write_json
from foramflow.label.routes_jobs import has_gpu
from foramflow.label.store import LabelStore
from foramflow.training.auto import choose_recipe

LOCAL = "http://127.0.0.1"
TINY = {"model": "base_cyclic", "input_size": 16, "batch_size": 8, "min_per_class": 2}
ENDED = ("done", "failed", "cancelled", "interrupted")
HUMAN_CSV = "sample,depth_cm,dark,bright\nS1_10cm,10,3,3\nS2_20cm,20,2,4\n"


def app_client(store: LabelStore) -> TestClient:
    """A fresh server over the project: a new one is a restarted server."""
    return TestClient(create_app(store.project_dir), base_url=LOCAL)


@pytest.fixture
def client(store: LabelStore) -> TestClient:
    return app_client(store)


def label_all(store: LabelStore) -> None:
    """Odd files are bright, even ones dark (see conftest)."""
    for row in store.all_rows("id, relpath"):
        bright = int(row["relpath"][-6:-4]) % 2
        store.set_labels([row["id"]], "bright" if bright else "dark", user="anna")


def wait_for(client: TestClient, job_id: str, states=ENDED, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['state']}: {job['progress']}")


def wait_for_file(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def start_training(client: TestClient, **options) -> dict:
    response = client.post(
        "/api/jobs/train", json={"classes": ["dark", "bright"], "options": {**TINY, **options}}
    )
    assert response.status_code == 202, response.text
    return response.json()


# -- progress ------------------------------------------------------------------------------


def test_job_progress_keeps_epoch_accuracy_counts_and_last_messages(tmp_path: Path):
    progress = JobProgress(tmp_path / "progress.json")
    for i in range(40):
        progress.message(f"message {i}")
    task = progress.task("Epoch 3/≤300", 10, acc="-")
    task.advance(4, acc="0.625")
    task.done()
    state = json.loads((tmp_path / "progress.json").read_text())
    assert (state["epoch"], state["epochs"], state["accuracy"]) == (3, 300, "0.625")
    assert state["task"]["completed"] == 4 and state["task"]["total"] == 10
    assert state["messages"] == [f"message {i}" for i in range(10, 40)]


# -- train ---------------------------------------------------------------------------------


def test_plan_says_what_auto_would_do_and_why(client, store: LabelStore):
    label_all(store)
    plan = client.get("/api/train/plan", params={"classes": ["dark", "bright"]}).json()
    assert plan["chosen"] == {"dark": 6, "bright": 6}
    expected = choose_recipe([6, 6], gpu=has_gpu(), colour=False)
    assert plan["auto"] == {
        "model": expected.model,
        "min_per_class": expected.min_per_class,
        "reasons": expected.reasons,
    }
    assert plan["classifier"] is None


def test_training_refuses_a_class_without_labelled_images(client, store: LabelStore):
    label_all(store)
    response = client.post("/api/jobs/train", json={"classes": ["dark", "ghost"]})
    assert response.status_code == 404
    assert "ghost" in response.json()["detail"]
    assert client.get("/api/jobs").json() == []


def test_a_training_job_ends_in_the_projects_classifier(client, store: LabelStore):
    label_all(store)
    job = wait_for(client, start_training(client, epochs=2)["id"])
    assert job["state"] == "done", job
    bundle = Path(job["result"]["bundle"])
    assert Bundle.load(bundle).labels == ["bright", "dark"]
    assert client.get("/api/classifier").json() == {"bundle": str(bundle)}
    assert (job["progress"]["epoch"], job["progress"]["epochs"]) == (2, 2)
    stats = client.get("/api/stats").json()
    counts = stats["confusion"]["counts"]
    assert sum(map(sum, counts)) == job["result"]["metrics"]["n_images"]
    assert set(stats["per_class"]) == {"bright", "dark"}
    assert "report.html" in client.get(f"/api/jobs/{job['id']}/files").json()
    curve = client.get("/api/calibration-curve").json()
    validation = read_validation(Bundle.load(bundle))
    correct = validation.probabilities.argmax(axis=1) == validation.labels
    assert curve["points"][-1]["coverage"] == 1.0
    assert curve["points"][-1]["accuracy"] == pytest.approx(correct.mean())
    assert curve["threshold"] == Bundle.load(bundle).meta.threshold
    report = client.get(f"/api/jobs/{job['id']}/files/report.html")
    assert report.status_code == 200 and b"<html" in report.content.lower()


def test_training_outlives_a_server_restart_and_resumes_after_its_process_died(store):
    label_all(store)
    first = app_client(store)
    job = start_training(first, epochs=40)
    run = store.project_dir / "jobs" / job["id"] / "run"
    wait_for_file(run / "checkpoint_last.pt")
    assert app_client(store).get(f"/api/jobs/{job['id']}").json()["state"] == "running"

    os.killpg(job["pid"], signal.SIGKILL)  # the job's process dies with the machine
    restarted = app_client(store)
    interrupted = wait_for(restarted, job["id"])
    assert interrupted["state"] == "interrupted"
    assert restarted.post(f"/api/jobs/{job['id']}/resume").status_code == 202
    done = wait_for(restarted, job["id"])
    assert done["state"] == "done", done
    assert done["resume"] is True
    epochs = pd.read_csv(run / "log.csv")["epoch"].tolist()
    assert epochs == list(range(1, 41))  # no epoch lost or trained twice
    assert Bundle.load(done["result"]["bundle"]).labels == ["bright", "dark"]


def test_cancelling_a_training_stops_it_and_leaves_no_bundle(client, store: LabelStore):
    label_all(store)
    job = start_training(client, epochs=1000)
    run = store.project_dir / "jobs" / job["id"] / "run"
    wait_for_file(run / "checkpoint_last.pt")
    second = client.post("/api/jobs/train", json={"classes": ["dark", "bright"]})
    assert second.status_code == 409 and "a training is running" in second.json()["detail"]
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    assert not (run / "bundle").exists() and not (run / "bundle_fast").exists()
    assert client.get("/api/classifier").json() == {"bundle": None}
    with pytest.raises(ProcessLookupError):
        os.killpg(job["pid"], 0)
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 409


def test_cancelling_an_interrupted_training_removes_its_half_written_bundle(store, client):
    jobs = Jobs(store.project_dir)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = jobs.root / "20260101000000train"
    (folder / "run" / "bundle").mkdir(parents=True)
    (folder / "run" / "bundle" / "model.onnx").write_bytes(b"half")
    job = {"id": folder.name, "kind": "train", "args": {}, "state": "running", "pid": gone.pid}
    write_json(folder / "job.json", {**job, "created": "2026-01-01T00:00:00+00:00"})
    assert client.get(f"/api/jobs/{folder.name}").json()["state"] == "interrupted"
    assert client.post(f"/api/jobs/{folder.name}/cancel").json()["state"] == "cancelled"
    assert not (folder / "run" / "bundle").exists()


# -- classify and count --------------------------------------------------------------------


def classify(client: TestClient, image_root: Path, bundle: Path) -> dict:
    response = client.post(
        "/api/jobs/classify", json={"images": str(image_root), "bundle": str(bundle)}
    )
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"])
    assert job["state"] == "done", job
    return job


def test_classify_job_gives_results_per_sample_corrected_in_place(
    client, store: LabelStore, image_root: Path, brightness_bundle: Path
):
    job = classify(client, image_root, brightness_bundle)
    samples = client.get(f"/api/jobs/{job['id']}/samples").json()
    assert samples == [
        {"sample": s, "images": 6, "counts": {"bright": 3, "dark": 3}}
        for s in ("S1_10cm", "S2_20cm")
    ]
    page = client.get(f"/api/jobs/{job['id']}/samples/S2_20cm").json()
    assert page["total"] == 6
    assert [(i["path"], i["predicted"]) for i in page["items"]] == [
        (f"S2_20cm/p{i:02d}.png", "bright" if i % 2 else "dark") for i in range(6)
    ]
    first = page["items"][0]
    assert store.rows([first["id"]])[0]["pred_label"] == "dark"  # predictions kept
    assert client.get(first["thumb"]).headers["content-type"] == "image/jpeg"
    client.post("/api/labels", json={"ids": [first["id"]], "label": "bright"})
    again = client.get(f"/api/jobs/{job['id']}/samples/S2_20cm").json()["items"][0]
    assert (again["predicted"], again["label"]) == ("dark", "bright")


def test_classify_refuses_a_folder_that_is_not_there(client, tmp_path, brightness_bundle):
    missing = tmp_path / "nowhere"
    response = client.post(
        "/api/jobs/classify", json={"images": str(missing), "bundle": str(brightness_bundle)}
    )
    assert response.status_code == 400
    assert str(missing) in response.json()["detail"]
    response = client.post("/api/jobs/classify", json={"images": str(tmp_path)})
    assert response.status_code == 400 and "train one first" in response.json()["detail"]
    assert client.get("/api/jobs").json() == []


def test_counts_with_human_counts_equal_the_library_steps(
    client, store, image_root: Path, brightness_bundle: Path, tmp_path: Path
):
    classified = classify(client, image_root, brightness_bundle)
    upload = client.post(
        "/api/uploads/human-counts", content=HUMAN_CSV, headers={"Content-Type": "text/csv"}
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["samples"] == ["S1_10cm", "S2_20cm"]
    response = client.post(
        "/api/jobs/abundance",
        json={"classify_job": classified["id"], "human": upload.json()["id"], "title": "core"},
    )
    job = wait_for(client, response.json()["id"])
    assert job["state"] == "done", job
    files = client.get(f"/api/jobs/{job['id']}/files").json()
    assert {"abundance.csv", "downcore.png", "downcore.svg", "report.html"} <= set(files)

    human = tmp_path / "human.csv"
    human.write_text(HUMAN_CSV)
    expected = estimate_abundance(
        classified["result"]["results"], tmp_path / "direct", human=human, title="core"
    )
    for name in (p.name for p in expected.written if p.suffix == ".csv"):
        served = client.get(f"/api/jobs/{job['id']}/files/{name}")
        assert served.content == (expected.out / name).read_bytes(), name
    parquet = client.get(f"/api/jobs/{job['id']}/files/abundance.csv?format=parquet")
    (tmp_path / "a.parquet").write_bytes(parquet.content)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a.parquet"), pd.read_csv(expected.out / "abundance.csv")
    )
    svg = client.get(f"/api/jobs/{job['id']}/files/downcore.svg")
    assert svg.content.lstrip().startswith(b"<?xml") and b"<svg" in svg.content
    png = client.get(f"/api/jobs/{job['id']}/files/downcore.png")
    assert png.content.startswith(b"\x89PNG")
    drift = pd.DataFrame(client.get(f"/api/jobs/{job['id']}/drift").json())
    pd.testing.assert_frame_equal(drift, pd.read_csv(expected.out / "drift.csv"))

    figure = client.get(f"/api/jobs/{job['id']}/downcore").json()
    assert (figure["classify_job"], figure["axis"]) == (classified["id"], "sample")
    table = pd.read_csv(expected.out / "abundance.csv")
    rank = table["sample"].map({"S1_10cm": 1, "S2_20cm": 2})  # no depths: samples in order
    model = [p for p in figure["points"] if p["method"] != "human"]
    assert [(p["method"], p["sample"], p["taxon"], p["position"]) for p in model] == list(
        zip(table["method"], table["sample"], table["taxon"], rank, strict=True)
    )
    assert [p["fraction"] for p in model] == pytest.approx(table["fraction"].tolist())
    human = {(p["sample"], p["taxon"]): p for p in figure["points"] if p["method"] == "human"}
    assert len(human) == 4
    assert human["S2_20cm", "dark"]["fraction"] == pytest.approx(2 / 6)
    assert human["S2_20cm", "dark"]["position"] == 2


def test_a_human_counts_file_that_cannot_be_read_is_refused_by_name(client, store):
    csv = {"Content-Type": "text/csv"}
    response = client.post("/api/uploads/human-counts", content="depth,dark\n1,2\n", headers=csv)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "uploaded human counts CSV" in detail and "'sample' column" in detail
    assert str(store.project_dir) not in detail
    assert list((store.project_dir / "jobs" / "uploads").iterdir()) == []


def test_counting_needs_a_finished_classification(client, store):
    response = client.post("/api/jobs/abundance", json={"classify_job": "20260101000000classify"})
    assert response.status_code == 404


def test_pages_are_served(client):
    for name in ("train", "classify", "count", "stats"):
        response = client.get(f"/{name}")
        assert response.status_code == 200
        assert f'data-page="{name}"' in response.text


def test_classify_refuses_a_sample_pattern_that_is_not_a_regex(
    client, image_root: Path, brightness_bundle: Path
):
    body = {"images": str(image_root), "bundle": str(brightness_bundle), "sample_regex": "(x"}
    response = client.post("/api/jobs/classify", json=body)
    assert response.status_code == 400
    assert "invalid sample regex '(x'" in response.json()["detail"]
    assert client.get("/api/jobs").json() == []


def test_classify_refuses_a_threshold_the_bundle_rule_cannot_take(
    client, image_root: Path, brightness_bundle: Path
):
    body = {"images": str(image_root), "bundle": str(brightness_bundle), "threshold": 0.3}
    response = client.post("/api/jobs/classify", json=body)
    assert response.status_code == 400
    assert "0.3" in response.json()["detail"]


def test_a_count_is_not_resumed_but_started_again(store, client):
    folder = Jobs(store.project_dir).root / "20260101000000abundance"
    folder.mkdir()
    job = {"id": folder.name, "kind": "abundance", "args": {}, "state": "failed"}
    write_json(folder / "job.json", {**job, "created": "2026-01-01T00:00:00+00:00"})
    response = client.post(f"/api/jobs/{folder.name}/resume")
    assert response.status_code == 409 and "start a new one" in response.json()["detail"]


def test_the_calibration_curve_needs_a_classifier(client, brightness_bundle: Path):
    assert client.get("/api/calibration-curve").status_code == 404
    curve = client.get("/api/calibration-curve", params={"bundle": str(brightness_bundle)})
    assert curve.json() == {"bundle": str(brightness_bundle), "threshold": 0.8, "points": []}


def test_a_job_whose_process_never_started_is_queued_then_interrupted(store, client):
    folder = Jobs(store.project_dir).root / "20260101000000classify"
    folder.mkdir()
    job = {"id": folder.name, "kind": "classify", "args": {}, "state": "queued"}
    write_json(folder / "job.json", {**job, "created": now_iso()})
    assert client.get(f"/api/jobs/{folder.name}").json()["state"] == "queued"
    write_json(folder / "job.json", {**job, "created": "2026-01-01T00:00:00+00:00"})
    assert client.get(f"/api/jobs/{folder.name}").json()["state"] == "interrupted"


def test_classify_progress_is_told_per_sample(
    client, store: LabelStore, image_root: Path, brightness_bundle: Path
):
    job = classify(client, image_root, brightness_bundle)
    assert job["progress"]["samples"] == [
        {"sample": s, "done": 6, "total": 6} for s in ("S1_10cm", "S2_20cm")
    ]


def test_per_sample_counts_follow_the_input_order():
    order = ["A", "A", "B", "B", "B", "C"]
    assert per_sample(order, 3) == [
        {"sample": "A", "done": 2, "total": 2},
        {"sample": "B", "done": 1, "total": 3},
        {"sample": "C", "done": 0, "total": 1},
    ]


def wait_for_message(client: TestClient, job_id: str, text: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if text in job["progress"].get("messages", []):
            return job
        assert job["state"] == "running", job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never said {text!r}: {job['progress']}")


def test_a_watched_folder_is_classified_again_as_images_arrive(
    client, store: LabelStore, tmp_path: Path, make_image, brightness_bundle: Path
):
    core = tmp_path / "core"
    make_image(core / "S1_10cm" / "a.png", np.full((16, 16), 0.2))
    make_image(core / "S2_20cm" / "a.png", np.full((16, 16), 0.8))
    body = {"images": str(core), "bundle": str(brightness_bundle), "watch": True}
    job_id = client.post("/api/jobs/classify", json=body).json()["id"]
    wait_for_message(client, job_id, f"watching {core}: 2 images classified")
    make_image(core / "S1_10cm" / "b.png", np.full((16, 16), 0.8))
    make_image(core / "S2_20cm" / "b.png", np.full((16, 16), 0.2))
    job = wait_for_message(client, job_id, f"watching {core}: 4 images classified")
    assert job["progress"]["samples"] == [
        {"sample": s, "done": 2, "total": 2} for s in ("S1_10cm", "S2_20cm")
    ]
    assert client.post(f"/api/jobs/{job_id}/stop").status_code == 200
    job = wait_for(client, job_id)
    assert job["state"] == "done" and job["result"]["images"] == 4, job
    table = pd.read_parquet(Path(job["result"]["results"]) / "predictions.parquet")
    assert sorted(zip(table["path"], table["class"])) == [
        ("S1_10cm/a.png", "dark"), ("S1_10cm/b.png", "bright"),
        ("S2_20cm/a.png", "bright"), ("S2_20cm/b.png", "dark"),
    ]  # fmt: skip
    predicted = {r["relpath"]: r["pred_label"] for r in store.all_rows("relpath, pred_label")}
    assert predicted["S1_10cm/b.png"] == "bright"  # the new images joined the project


def test_only_a_running_watch_can_be_stopped(client, image_root: Path, brightness_bundle: Path):
    job = classify(client, image_root, brightness_bundle)
    response = client.post(f"/api/jobs/{job['id']}/stop")
    assert response.status_code == 409 and "does not watch a folder" in response.json()["detail"]


def test_a_watched_folder_changes_only_with_its_images(tmp_path: Path, make_image):
    make_image(tmp_path / "S1" / "a.png", np.full((8, 8), 0.5))
    before = images_listing(tmp_path)
    (tmp_path / "S1" / "log.txt").write_text("imaging system notes")
    (tmp_path / "S1" / ".b.png.part").write_bytes(b"half")
    assert images_listing(tmp_path) == before
    make_image(tmp_path / "S1" / "b.png", np.full((8, 8), 0.5))
    assert [Path(p).name for p, _size, _mtime in images_listing(tmp_path)] == ["a.png", "b.png"]
