"""The web API: paging, labelling from two clients, security (paths, token, host)."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from foramflow.label.app import create_app
from foramflow.label.store import LabelStore

LOCAL = "http://127.0.0.1"


@pytest.fixture
def client(store: LabelStore) -> TestClient:
    return TestClient(create_app(store.project_dir), base_url=LOCAL)


def test_grid_pages_and_filters(client: TestClient):
    page = client.get("/api/images", params={"limit": 5, "offset": 10}).json()
    assert page["total"] == 12
    assert [item["id"] for item in page["items"]] == [11, 12]
    item = page["items"][0]
    assert item["thumb"] == "/api/images/11/thumb"
    assert client.get(item["full"]).status_code == 200
    thumb = client.get(item["thumb"])
    assert thumb.headers["content-type"] == "image/jpeg"
    assert client.get("/api/images", params={"sample": "S1_10cm"}).json()["total"] == 6
    assert client.get("/api/images", params={"status": "validated"}).json()["total"] == 0


def test_label_counts_and_undo(client: TestClient):
    assert client.post("/api/labels", json={"ids": [1, 2, 3], "label": "G_ruber"}).json() == {
        "changed": 3
    }
    classes = client.get("/api/classes").json()
    assert classes == [
        {"name": "G_ruber", "group": "", "validated": 3, "predicted": 0, "below_target": True}
    ]
    undone = client.post("/api/undo", json={}).json()
    assert sorted(undone["ids"]) == [1, 2, 3]
    assert client.get("/api/classes").json()[0]["validated"] == 0
    detail = client.get("/api/images/1").json()
    assert [h["action"] for h in detail["history"]] == ["label", "undo"]


def test_concurrent_label_writes_from_two_clients_lose_nothing(store: LabelStore):
    app = create_app(store.project_dir)
    errors = []

    def work(ids, label):
        with TestClient(app, base_url=LOCAL) as c:
            for image_id in ids:
                response = c.post(
                    "/api/labels", json={"ids": [image_id], "label": label, "user": label}
                )
                if response.status_code != 200:
                    errors.append(response.text)

    threads = [
        threading.Thread(target=work, args=(list(range(1, 13)) * 3, "A")),
        threading.Thread(target=work, args=(list(range(12, 0, -1)) * 3, "B")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = store.query("SELECT count(*) FROM history")
    assert rows[0][0] == 72  # every write recorded
    # The last write to each image wins, and it is the one the history ends with.
    for image_id in range(1, 13):
        last = store.history(image_id)[-1]["new_label"]
        assert store.rows([image_id])[0]["label"] == last


def test_paths_out_of_the_roots_are_refused(
    client: TestClient, store: LabelStore, image_root: Path, tmp_path: Path, make_image
):
    (root_id,) = store.roots
    secret = make_image(tmp_path / "secret.png", np.ones((4, 4)))
    os.symlink(secret, image_root / "S1_10cm" / "link_out.png")
    assert client.get(f"/files/{root_id}/S1_10cm/p00.png").status_code == 200
    for bad in (
        f"/files/{root_id}/..%2Fsecret.png",
        f"/files/{root_id}/S1_10cm/%2E%2E/%2E%2E/secret.png",
        f"/files/{root_id}/%2F{secret}",
        f"/files/{root_id}/S1_10cm/link_out.png",
    ):
        response = client.get(bad)
        assert response.status_code in (403, 404), bad
        assert response.content != secret.read_bytes()
    assert client.get(f"/files/{root_id}/S1_10cm/link_out.png").status_code == 403
    assert client.get(f"/files/{root_id + 5}/S1_10cm/p00.png").status_code == 403


def test_token_required_when_bound_beyond_localhost(store: LabelStore):
    app = create_app(store.project_dir, token="s3cret")
    anonymous = TestClient(app, base_url="http://192.168.1.20:8765")
    assert anonymous.get("/api/project").status_code == 401
    assert anonymous.get("/").status_code == 401
    assert anonymous.get("/api/images/1/thumb").status_code == 401
    assert anonymous.get("/api/project", params={"token": "wrong"}).status_code == 401
    bearer = {"Authorization": "Bearer s3cret"}
    assert anonymous.get("/api/project", headers=bearer).status_code == 200
    browser = TestClient(app, base_url="http://192.168.1.20:8765")
    assert browser.get("/", params={"token": "s3cret"}).status_code == 200
    assert browser.get("/api/project").status_code == 200  # the cookie carries the token


def test_local_app_refuses_foreign_host_names(store: LabelStore):
    """Without a token the app answers only loopback host names (no DNS rebinding)."""
    app = create_app(store.project_dir)
    assert TestClient(app, base_url="http://evil.example").get("/api/project").status_code == 400
    assert TestClient(app, base_url="http://localhost:8765").get("/api/project").status_code == 200


def test_class_management_and_export(client: TestClient, store: LabelStore):
    client.post("/api/labels", json={"ids": [1, 3], "label": "dark"})
    client.post("/api/labels", json={"ids": [2], "label": "brite"})
    client.post("/api/classes/rename", json={"old": "brite", "new": "bright"})
    client.post("/api/classes/group", json={"name": "bright", "group": "planktonic"})
    assert client.post("/api/classes", json={"name": "a/b"}).status_code == 400
    assert client.post("/api/classes/rename", json={"old": "nope", "new": "x"}).status_code == 404
    result = client.post("/api/export", json={"kind": "training-set"}).json()
    dest = Path(result["path"])
    assert dest.parent == store.project_dir / "exports"
    assert result["counts"] == {"dark": 2, "bright": 1}
    assert sorted(p.name for p in (dest / "dark").iterdir()) == [
        "S1_10cm__p00.png",
        "S1_10cm__p02.png",
    ]
    for kind in ("csv", "particletrieur", "ecotaxa"):
        assert client.post("/api/export", json={"kind": kind}).status_code == 200
    ecotaxa = client.post("/api/export", json={"kind": "ecotaxa"}).json()
    assert Path(ecotaxa["zip"]).parent == Path(ecotaxa["path"])
    assert zipfile.ZipFile(ecotaxa["zip"]).namelist()[0] == "ecotaxa_project.tsv"
