"""Pre-labelling with a model bundle: suggestions, bulk accept, disagreements."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from foramflow.label.app import create_app
from foramflow.label.prelabel import prelabel
from foramflow.label.store import ImageFilter, LabelStore


def test_prelabel_predicts_every_image(store: LabelStore, brightness_bundle: Path):
    count, problems = prelabel(store, brightness_bundle)
    assert (count, problems) == (12, [])
    rows = store.page(limit=100)
    # Odd-numbered files are bright, even ones dark (see the fixture).
    for row in rows:
        expected = "bright" if int(row["relpath"][-6:-4]) % 2 else "dark"
        assert row["pred_label"] == expected
        assert row["pred_score"] > 0.99
        assert row["pred_model"] == "brightness-v1"
        assert row["status"] == "predicted"
    assert {c["name"]: c["predicted"] for c in store.classes()} == {"dark": 6, "bright": 6}


def test_accept_in_bulk_and_list_disagreements(store: LabelStore, brightness_bundle: Path):
    prelabel(store, brightness_bundle)
    assert store.accept_predictions(label="bright", min_score=0.95, user="anna") == 6
    assert store.count(ImageFilter(status="validated")) == 6
    # An expert calls image 1 (dark) "bright"; re-running the model disagrees.
    store.set_labels([1], "bright", user="anna")
    prelabel(store, brightness_bundle)
    assert store.disagreements() == [1]


def test_prelabel_through_the_api(store: LabelStore, brightness_bundle: Path):
    client = TestClient(create_app(store.project_dir), base_url="http://127.0.0.1")
    assert client.post("/api/prelabel", json={"bundle": "/no/such/bundle"}).status_code == 400
    assert client.post("/api/prelabel", json={"bundle": str(brightness_bundle)}).status_code == 202
    for _ in range(200):
        state = client.get("/api/prelabel").json()
        if not state["running"]:
            break
        time.sleep(0.05)
    assert state["message"] == "12 images predicted"
    assert client.post("/api/accept", json={"label": "dark", "min_score": 0.95}).json() == {
        "changed": 6
    }
    client.post("/api/labels", json={"ids": [2], "label": "dark"})
    assert [row["id"] for row in client.get("/api/disagreements").json()] == [2]
