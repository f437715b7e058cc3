"""Nothing let in: class names, export folders, cross-site posts, body size, hosts, files.

Each test feeds the app or the store something a hostile web page, a hostile project file
or a careless user could send, and checks both the answer and that nothing changed where
it must not (no file outside the export folder, no label undone, no class created).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from foramflow.errors import ForamflowError, OutputError
from foramflow.label import export
from foramflow.label.app import create_app
from foramflow.label.guard import MAX_BODY_BYTES, MAX_IDS_PER_REQUEST, BodyLimit
from foramflow.label.prelabel import prelabel
from foramflow.label.store import InvalidName, LabelStore, class_name

LOCAL = "http://127.0.0.1"
PATH_LIKE_NAMES = ["/tmp/x", "../../..", "..", ".", ".hidden", "a\\b", "a\x00b", "a\nb", " ", ""]


@pytest.fixture
def client(store: LabelStore) -> TestClient:
    return TestClient(create_app(store.project_dir), base_url=LOCAL)


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def files_outside(folder: Path, dest: Path) -> set[Path]:
    """Everything under ``folder`` except ``dest``, its contents and the folders above it."""
    return {
        p for p in files_under(folder) if not (p.is_relative_to(dest) or dest.is_relative_to(p))
    }


# -- class names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*PATH_LIKE_NAMES, "x" * 101])
def test_class_name_rule_refuses_paths_and_hidden_names(name: str):
    with pytest.raises(InvalidName, match="class name"):
        class_name(name)


def test_class_name_rule_keeps_ordinary_names():
    assert class_name("  G_ruber (white)  ") == "G_ruber (white)"
    assert class_name("N. pachyderma (sin)") == "N. pachyderma (sin)"
    with pytest.raises(InvalidName, match="ends with a dot"):
        class_name("N. pachyderma sin.")  # Windows would drop the dot


CREATING_ROUTES = [
    ("/api/labels", lambda bad: {"ids": [1, 2], "label": bad}),
    ("/api/classes", lambda bad: {"name": bad}),
    ("/api/classes/rename", lambda bad: {"old": "dark", "new": bad}),
    ("/api/classes/merge", lambda bad: {"sources": ["dark"], "target": bad}),
    ("/api/accept", lambda bad: {"label": bad, "min_score": 0.5}),
]


@pytest.mark.parametrize("route, body", CREATING_ROUTES, ids=[r for r, _ in CREATING_ROUTES])
@pytest.mark.parametrize("bad", ["/tmp/x", "../../..", "..", ".hidden"])
def test_class_name_that_is_a_path_is_refused(client, store: LabelStore, route, body, bad):
    store.set_labels([3], "dark", user="anna")
    store.set_predictions([(4, "dark", 0.9, 0.8)], model="m")
    before = (store.classes(), store.all_rows("id, label, pred_label"))
    response = client.post(route, json=body(bad))
    assert response.status_code == 400, response.text
    assert "class name" in response.json()["detail"]
    assert (store.classes(), store.all_rows("id, label, pred_label")) == before


@pytest.mark.parametrize(
    "route, body",
    [
        ("/api/classes/rename", {"old": "../../..", "new": "fine"}),
        ("/api/classes/group", {"name": "../../..", "group": "g"}),
    ],
)
def test_routes_that_look_a_class_up_find_no_path_like_class(client, store, route, body):
    assert client.post(route, json=body).status_code == 404
    assert store.classes() == []


def legacy_label(store: LabelStore, image_id: int, label: str) -> None:
    """A label written before names were checked (straight into the database)."""
    with store.write() as con:
        con.execute("INSERT INTO classes(name, position) VALUES (?, 99)", (label,))
        con.execute(
            "UPDATE images SET label = ?, validated_by = 'old' WHERE id = ?", (label, image_id)
        )


def test_a_legacy_path_like_class_can_be_renamed_to_a_valid_name(client, store: LabelStore):
    legacy_label(store, 1, "..")
    assert client.post("/api/classes/rename", json={"old": "..", "new": "dark"}).status_code == 200
    assert store.rows([1])[0]["label"] == "dark"


def test_prelabel_refuses_a_bundle_whose_labels_are_paths(store, brightness_bundle: Path):
    meta_path = brightness_bundle / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["labels"] = ["dark", "../../bright"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ForamflowError, match=r"model\.json.*class name"):
        prelabel(store, brightness_bundle)
    assert store.status_counts()["predicted"] == 0


def particletrieur_xml(folder: Path, image: Path, *, code: str, sample: str = "S1") -> Path:
    xml = folder / "project.xml"
    xml.write_text(
        f"<project><taxons><taxon><code>{code}</code><isClass>true</isClass></taxon></taxons>"
        f"<images><image><source><filename>{image.name}</filename><sampleID>{sample}</sampleID>"
        "</source><val_by>anna</val_by><classifications id='human'><classification>"
        f"<code>{code}</code><value>1.0</value></classification></classifications>"
        "</image></images></project>"
    )
    return xml


@pytest.mark.parametrize("code", ["../../evil", "/tmp/evil", ".."])
def test_particletrieur_import_refuses_path_like_class(tmp_path: Path, make_image, code):
    image = make_image(tmp_path / "pt" / "a.png", np.zeros((8, 8)))
    xml = particletrieur_xml(tmp_path / "pt", image, code=code)
    fresh = LabelStore(tmp_path / "fresh")
    with pytest.raises(InvalidName, match=r"project\.xml.*class name"):
        export.import_particletrieur(fresh, xml)
    assert (fresh.count(), fresh.classes()) == (0, [])


def test_particletrieur_import_refuses_path_like_sample(tmp_path: Path, make_image):
    image = make_image(tmp_path / "pt" / "a.png", np.zeros((8, 8)))
    xml = particletrieur_xml(tmp_path / "pt", image, code="dark", sample="../../x")
    fresh = LabelStore(tmp_path / "fresh")
    with pytest.raises(InvalidName, match=r"project\.xml.*sample name"):
        export.import_particletrieur(fresh, xml)
    assert fresh.count() == 0


def test_metadata_csv_refuses_path_like_sample(tmp_path: Path, image_root: Path):
    csv_path = tmp_path / "meta.csv"
    csv_path.write_text("sample,depth_cm\nS1_10cm,1\n../../escape,2\n")
    fresh = LabelStore(tmp_path / "fresh")
    with pytest.raises(InvalidName, match=r"meta\.csv: line 3: .*sample name"):
        fresh.add_images(image_root, metadata_csv=csv_path)
    assert fresh.count() == 0


# -- exports stay in their folder --------------------------------------------------------


def test_training_set_export_refuses_a_legacy_class_that_leads_out(store: LabelStore, tmp_path):
    legacy_label(store, 1, "..")
    dest = tmp_path / "out" / "train"
    before = files_outside(tmp_path, dest)
    with pytest.raises(OutputError, match="out of the export folder"):
        export.export_training_set(store, dest)
    assert files_outside(tmp_path, dest) == before
    assert files_under(dest) == set()  # refused before anything was written


def test_training_set_export_refuses_a_legacy_sample_that_leads_out(store: LabelStore, tmp_path):
    store.set_labels([1], "dark", user="anna")
    with store.write() as con:
        con.execute("UPDATE images SET sample = '../../../x' WHERE id = 1")
    dest = tmp_path / "out" / "train"
    before = files_outside(tmp_path, dest)
    with pytest.raises(OutputError, match="out of the export folder"):
        export.export_training_set(store, dest)
    assert files_outside(tmp_path, dest) == before
    assert files_under(dest) == set()  # refused before anything was written


def test_training_set_export_does_not_follow_links_out_of_its_folder(store, tmp_path: Path):
    store.set_labels([1], "dark", user="anna")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "labels.csv").write_text("precious")
    dest = tmp_path / "train"
    dest.mkdir()
    os.symlink(outside, dest / "dark")
    with pytest.raises(OutputError, match="out of the export folder"):
        export.export_training_set(store, dest)
    os.unlink(dest / "dark")
    os.symlink(outside / "labels.csv", dest / "labels.csv")
    with pytest.raises(OutputError, match="out of the export folder"):
        export.export_training_set(store, dest)
    assert sorted(p.name for p in outside.iterdir()) == ["labels.csv"]
    assert (outside / "labels.csv").read_text() == "precious"
    assert sorted(p.name for p in dest.iterdir()) == ["labels.csv"]  # nothing copied


def test_ecotaxa_export_does_not_follow_links_out_of_its_folder(store, tmp_path: Path):
    store.set_labels([1], "dark", user="anna")
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "eco"
    dest.mkdir()
    os.symlink(outside, dest / "images")
    with pytest.raises(OutputError, match="out of the export folder"):
        export.export_ecotaxa(store, dest)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("kind", ["csv", "particletrieur"])
def test_single_file_exports_replace_a_link_instead_of_writing_through_it(store, tmp_path, kind):
    outside = tmp_path / "precious.txt"
    outside.write_text("precious")
    target = tmp_path / "out.file"
    os.symlink(outside, target)
    if kind == "csv":
        export.export_labels_csv(store, target)
    else:
        export.export_particletrieur(store, target)
    assert outside.read_text() == "precious"
    assert not target.is_symlink() and target.stat().st_size > 0


@pytest.mark.parametrize("kind", ["training-set", "csv", "particletrieur", "ecotaxa"])
def test_api_exports_write_only_inside_their_new_folder(client, store: LabelStore, kind):
    store.set_labels([1], "dark", user="anna")
    store.set_labels([2], "bright", user="anna")
    project = store.project_dir
    before = files_under(project.parent)
    response = client.post("/api/export", json={"kind": kind})
    assert response.status_code == 200, response.text
    dest = Path(response.json()["path"])
    assert dest.parent == project / "exports"
    new = files_under(project.parent) - before
    assert new and all(p == dest or p.is_relative_to(dest) or p == dest.parent for p in new)


def test_api_export_of_a_legacy_path_like_class_is_refused(client, store: LabelStore):
    legacy_label(store, 1, "..")
    response = client.post("/api/export", json={"kind": "training-set"})
    assert response.status_code == 400
    assert "out of the export folder" in response.json()["detail"]
    assert list((store.project_dir / "exports").iterdir()) == []  # the half export is gone


# -- cross-site requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},  # another local server is another site
        {"Referer": "http://evil.example/page.html"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_site_post_is_refused(client: TestClient, store: LabelStore, headers):
    store.set_labels([1, 2], "dark", user="anna")
    form = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    response = client.post("/api/undo", content=b"", headers=form)
    assert response.status_code == 403
    assert "cross-site" in response.json()["detail"]
    assert [r["label"] for r in store.rows([1, 2])] == ["dark", "dark"]


def test_own_page_and_scripts_may_post(client: TestClient, store: LabelStore):
    store.set_labels([1], "dark", user="anna")
    store.set_labels([2], "dark", user="anna")
    own = {"Origin": LOCAL, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/undo", json={}, headers=own).json()["ids"] == [2]
    referer = {"Referer": f"{LOCAL}/"}
    assert client.post("/api/undo", json={}, headers=referer).json()["ids"] == [1]
    assert client.post("/api/labels", json={"ids": [3], "label": "dark"}).status_code == 200


def test_reads_from_another_origin_are_answered(client: TestClient):
    """A foreign page cannot read the answer (no CORS), and reading changes nothing."""
    assert client.get("/api/project", headers={"Origin": "http://evil.example"}).status_code == 200


def test_token_mode_checks_origin_too(store: LabelStore):
    app = create_app(store.project_dir, token="s3cret")
    remote = TestClient(app, base_url="http://192.168.1.20:8765")
    bearer = {"Authorization": "Bearer s3cret"}
    assert remote.post("/api/undo", json={}, headers=bearer).status_code == 200
    own = {**bearer, "Origin": "http://192.168.1.20:8765"}
    assert remote.post("/api/undo", json={}, headers=own).status_code == 200
    foreign = {**bearer, "Origin": "http://evil.example"}
    assert remote.post("/api/undo", json={}, headers=foreign).status_code == 403
    assert remote.post("/api/undo", json={}).status_code == 401


# -- request size ------------------------------------------------------------------------


def test_body_over_the_cap_is_refused_with_413(client: TestClient, store: LabelStore):
    ids = ",".join(["1"] * (MAX_BODY_BYTES // 2 + 10))
    body = f'{{"ids": [{ids}], "label": "dark"}}'.encode()
    response = client.post(
        "/api/labels", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "bytes" in response.json()["detail"]
    assert store.classes() == []


def test_streamed_body_over_the_cap_is_refused_without_content_length():
    """A chunked body carries no Content-Length: the middleware counts what arrives."""
    calls = []

    async def app(scope, receive, send):
        calls.append(scope)

    chunk = b"x" * 4096
    messages = [{"type": "http.request", "body": chunk, "more_body": True}] * 1000
    sent = []

    async def receive():
        return messages.pop()

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/labels", "headers": []}
    asyncio.run(BodyLimit(app, max_bytes=10_000)(scope, receive, send))
    assert calls == []
    assert sent[0]["status"] == 413
    assert len(messages) == 1000 - 3  # stopped reading at the first chunk over the cap


def test_streamed_body_under_the_cap_reaches_the_app_whole():
    received = []

    async def app(scope, receive, send):
        received.append(await receive())

    messages = [
        {"type": "http.request", "body": b"de", "more_body": False},
        {"type": "http.request", "body": b"abc", "more_body": True},
    ]

    async def receive():
        return messages.pop()

    async def send(message):
        raise AssertionError(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(BodyLimit(app, max_bytes=10)(scope, receive, send))
    assert received == [{"type": "http.request", "body": b"abcde", "more_body": False}]


def test_too_many_ids_in_one_request_is_refused_with_413(client: TestClient, store: LabelStore):
    ids = list(range(1, MAX_IDS_PER_REQUEST + 2))
    response = client.post("/api/labels", json={"ids": ids, "label": "dark"})
    assert response.status_code == 413
    assert str(MAX_IDS_PER_REQUEST) in response.json()["detail"]
    assert store.classes() == []


# -- files ---------------------------------------------------------------------------------


def test_file_routes_refuse_traversal(
    client, store: LabelStore, image_root: Path, tmp_path, make_image
):
    (root_id,) = store.roots
    secret = make_image(tmp_path / "secret.png", np.ones((4, 4)))
    for bad in (
        f"/files/{root_id}/..%2Fsecret.png",
        f"/files/{root_id}/S1_10cm/..%5C..%5Csecret.png",
        f"/files/{root_id}/S1_10cm/p00.png%00.png",
        f"/files/{root_id}/%2F{secret}",
        "/static/..%2F..%2Fstore.py",
        "/static/%2E%2E/app.py",
    ):
        response = client.get(bad)
        assert response.status_code in (400, 403, 404), bad
        assert response.content != secret.read_bytes()
        assert b"LabelStore" not in response.content


def test_thumbnail_of_a_tampered_path_is_refused(client, store: LabelStore, tmp_path, make_image):
    make_image(tmp_path / "secret.png", np.ones((4, 4)))
    with store.write() as con:
        con.execute("UPDATE images SET relpath = '../secret.png' WHERE id = 1")
    assert client.get("/api/images/1/thumb").status_code == 403


# -- hosts and tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base", ["http://127.0.0.2:8765", "http://127.0.0.1", "http://[::1]:8765", "http://localhost"]
)
def test_any_loopback_host_is_answered_without_token(store: LabelStore, base: str):
    app = create_app(store.project_dir)
    assert TestClient(app, base_url=base).get("/api/project").status_code == 200


@pytest.mark.parametrize("base", ["http://127.0.0.1.evil.example", "http://10.0.0.1:8765"])
def test_local_app_refuses_other_hosts(store: LabelStore, base: str):
    app = create_app(store.project_dir)
    assert TestClient(app, base_url=base).get("/api/project").status_code == 400


def served_app(monkeypatch, store: LabelStore, host: str):
    """The app ``foramflow label --host HOST`` would serve, and the token it printed."""
    import uvicorn

    from foramflow.cli import label_commands

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    label_commands._serve(store.project_dir, host=host, port=8765)
    assert served["host"] == host
    return served["app"]


@pytest.mark.parametrize(
    "host, base", [("127.0.0.2", "http://127.0.0.2:8765"), ("::1", "http://[::1]:8765")]
)
def test_host_127_0_0_2_works(monkeypatch, store: LabelStore, host: str, base: str):
    app = served_app(monkeypatch, store, host)
    client = TestClient(app, base_url=base)
    assert client.get("/api/project").status_code == 200
    own = {"Origin": base}
    assert (
        client.post("/api/labels", json={"ids": [1], "label": "dark"}, headers=own).status_code
        == 200
    )


def test_token_required_off_loopback(monkeypatch, store: LabelStore):
    app = served_app(monkeypatch, store, "0.0.0.0")
    client = TestClient(app, base_url="http://192.168.1.20:8765")
    assert client.get("/api/project").status_code == 401
    assert client.post("/api/undo", json={}).status_code == 401


def test_invalid_name_is_a_foramflow_error():
    assert issubclass(InvalidName, ForamflowError) and issubclass(InvalidName, ValueError)


# -- the import page and labelling aids ------------------------------------------------------

IMPORT_POSTS = [
    "/api/import/samples",
    "/api/import/crops",
    "/api/import/flowcam",
    "/api/import/particletrieur",
    "/api/import/segment/preview",
    "/api/import/segment",
    "/api/morphology/measure",
]
IMPORT_GETS = ["/import", "/api/import/segment", "/api/morphology", "/api/images/1/similar"]


def import_body(route: str, folder: Path) -> dict:
    return {"project": str(folder)} if route.endswith("particletrieur") else {"folder": str(folder)}


@pytest.mark.parametrize("route", IMPORT_POSTS)
def test_import_routes_refuse_cross_site_posts(client, store: LabelStore, image_root, route):
    before = store.all_rows("id, sample")
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        response = client.post(route, json=import_body(route, image_root), headers=headers)
        assert response.status_code == 403, route
    assert store.all_rows("id, sample") == before
    assert not (store.project_dir / "imports").exists()


@pytest.mark.parametrize("route", IMPORT_POSTS)
def test_import_routes_refuse_bodies_over_the_cap(client, store: LabelStore, route):
    body = b'{"folder": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    response = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert store.count() == 12


@pytest.mark.parametrize("route", IMPORT_POSTS + IMPORT_GETS)
def test_import_routes_need_the_token_off_loopback(store: LabelStore, image_root, route):
    remote = TestClient(create_app(store.project_dir, token="s3cret"), base_url="http://10.0.0.5")
    if route in IMPORT_POSTS:
        response = remote.post(route, json=import_body(route, image_root))
    else:
        response = remote.get(route)
    assert response.status_code == 401
    bearer = {"Authorization": "Bearer s3cret"}
    assert remote.get("/api/morphology", headers=bearer).status_code == 200
    assert store.count() == 12


@pytest.mark.parametrize("route", IMPORT_GETS)
def test_import_routes_refuse_other_hosts_without_token(store: LabelStore, route):
    app = create_app(store.project_dir)
    assert TestClient(app, base_url="http://127.0.0.1.evil.example").get(route).status_code == 400


@pytest.mark.parametrize(
    "body, found",
    [
        ({"regex": r"(?P<sample>\.\.)"}, "sample name"),  # the sample would be '..'
        ({"regex": r"(?P<sample>S1_10cm/p)"}, "sample name"),  # matches only S1: refused
        ({"table": "/nonexistent/samples.csv"}, "samples.csv"),
    ],
)
def test_sample_rules_that_lead_out_are_refused(client, store, image_root, body, found):
    response = client.post("/api/import/crops", json={"folder": str(image_root), **body})
    assert response.status_code == 400
    assert store.samples() == ["S1_10cm", "S2_20cm"]


def test_flowcam_collage_named_as_a_path_is_refused(client, store: LabelStore, tmp_path: Path):
    from flowcam_exports import known_export

    export_dir, _, _ = known_export(tmp_path / "S9")
    (tmp_path / "outside.tif").write_bytes((export_dir / "run_000001.tif").read_bytes())
    lst = export_dir / "run.lst"
    lst.write_text(lst.read_text().replace("|run_000001.tif|", "|../outside.tif|", 1))
    response = client.post("/api/import/flowcam", json={"folder": str(export_dir)})
    assert response.status_code == 400
    assert "is not a file name" in response.json()["detail"]
    assert store.count() == 12
    assert list((store.project_dir / "imports").iterdir()) == []


def test_imported_crops_are_served_only_from_their_folder(client, store, tmp_path, make_image):
    make_image(tmp_path / "new" / "S5" / "a.png", np.ones((8, 8)))
    secret = make_image(tmp_path / "secret.png", np.ones((4, 4)))
    assert (
        client.post("/api/import/crops", json={"folder": str(tmp_path / "new")}).status_code == 200
    )
    root_id = max(client.app.state.store.roots)
    assert client.get(f"/files/{root_id}/S5/a.png").status_code == 200
    for bad in (f"/files/{root_id}/..%2Fsecret.png", f"/files/{root_id}/S5/..%2F..%2Fsecret.png"):
        response = client.get(bad)
        assert response.status_code in (400, 403, 404), bad
        assert response.content != secret.read_bytes()


@pytest.mark.parametrize("image_id", ["0", "-1", str(2**63), "1%2F..%2F2"])
def test_similar_refuses_ids_that_are_not_image_ids(client, image_id: str):
    assert client.get(f"/api/images/{image_id}/similar").status_code in (404, 422)


# -- job routes: train, classify, count, statistics ------------------------------------------

JOB_ID = "20260101000000abundance"
JOB_POSTS = [
    ("/api/jobs/train", {"classes": ["dark", "bright"]}),
    ("/api/jobs/classify", {"images": "/tmp"}),
    ("/api/jobs/abundance", {"classify_job": JOB_ID}),
    ("/api/uploads/human-counts", "sample,dark\nS1,3\n"),
    (f"/api/jobs/{JOB_ID}/cancel", {}),
    (f"/api/jobs/{JOB_ID}/resume", {}),
    (f"/api/jobs/{JOB_ID}/stop", {}),
    ("/api/presence", {}),
]
JOB_GETS = [
    *("/train", "/classify", "/count", "/stats", "/api/jobs", "/api/train/plan"),
    *("/api/classifier", "/api/stats", f"/api/jobs/{JOB_ID}", f"/api/jobs/{JOB_ID}/files"),
    f"/api/jobs/{JOB_ID}/files/abundance.csv",
    f"/api/jobs/{JOB_ID}/drift",
    f"/api/jobs/{JOB_ID}/downcore",
]


def post(client: TestClient, route: str, body, headers=None):
    if isinstance(body, str):
        return client.post(
            route, content=body, headers={"Content-Type": "text/csv", **(headers or {})}
        )
    return client.post(route, json=body, headers=headers)


def done_abundance_job(store: LabelStore) -> Path:
    """A finished abundance job's folder, its output beside its job.json."""
    folder = store.project_dir / "jobs" / JOB_ID
    (folder / "abundance").mkdir(parents=True)
    (folder / "abundance" / "abundance.csv").write_text(
        "method,sample,taxon,count,total,fraction,low,high\nraw,S1,dark,1,2,0.5,0.1,0.9\n"
    )
    job = {"id": JOB_ID, "kind": "abundance", "state": "done", "created": "2026"}
    job["result"] = {"out": str(folder / "abundance")}
    job["args"] = {"results": str(store.project_dir / "jobs" / "20260101000000classify" / "x")}
    (folder / "job.json").write_text(json.dumps(job))
    return folder


@pytest.mark.parametrize("route, body", JOB_POSTS, ids=[r for r, _ in JOB_POSTS])
def test_cross_site_job_posts_are_refused(client, store: LabelStore, route, body):
    store.set_labels([1], "dark", user="anna")
    store.set_labels([2], "bright", user="anna")
    before = files_under(store.project_dir)
    response = post(client, route, body, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403
    assert files_under(store.project_dir) == before  # no job, no upload


@pytest.mark.parametrize("route, body", JOB_POSTS, ids=[r for r, _ in JOB_POSTS])
def test_job_posts_need_the_token(store: LabelStore, route, body):
    remote = TestClient(create_app(store.project_dir, token="s3cret"), base_url="http://10.0.0.1")
    before = files_under(store.project_dir)
    assert post(remote, route, body).status_code == 401
    assert files_under(store.project_dir) == before


@pytest.mark.parametrize("route", JOB_GETS)
def test_job_pages_and_reads_need_the_token(store: LabelStore, route):
    done_abundance_job(store)
    remote = TestClient(create_app(store.project_dir, token="s3cret"), base_url="http://10.0.0.1")
    assert remote.get(route).status_code == 401
    assert remote.get(route, headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize("base", ["http://10.0.0.1:8765", "http://127.0.0.1.evil.example"])
def test_local_app_refuses_job_routes_on_other_hosts(store: LabelStore, base: str):
    client = TestClient(create_app(store.project_dir), base_url=base)
    assert client.get("/api/jobs").status_code == 400
    assert post(client, "/api/jobs/train", {"classes": ["a", "b"]}).status_code == 400


def test_human_counts_over_the_cap_are_refused_with_413(client, store: LabelStore):
    body = "sample,dark\n" + "S1,1\n" * (MAX_BODY_BYTES // 5)
    response = post(client, "/api/uploads/human-counts", body)
    assert response.status_code == 413
    assert not (store.project_dir / "jobs" / "uploads").exists()


def test_job_file_routes_refuse_traversal(client, store: LabelStore):
    folder = done_abundance_job(store)
    secret = (folder / "job.json").read_bytes()
    assert client.get(f"/api/jobs/{JOB_ID}/files/abundance.csv").status_code == 200
    for bad in (
        f"/api/jobs/{JOB_ID}/files/..%2Fjob.json",
        f"/api/jobs/{JOB_ID}/files/%2E%2E%2Fjob.json",
        f"/api/jobs/{JOB_ID}/files/..%5Cjob.json",
        f"/api/jobs/{JOB_ID}/files/%2Fetc%2Fpasswd",
        f"/api/jobs/{JOB_ID}/files/job.json",
        "/api/jobs/..%2F..%2Fproject/files",
        "/api/jobs/../job.json",
        f"/api/jobs/{JOB_ID}%2F..%2F..",
        "/api/jobs/uploads/files",
        "/api/jobs/..%2F..%2Fproject/downcore",
        f"/api/jobs/{JOB_ID}%2F..%2Fjob.json/downcore",
        "/api/jobs/uploads/downcore",
        "/api/jobs/..%2Fjobs%2F20260101000000classify/stop",
    ):
        response = client.get(bad)
        assert response.status_code in (400, 403, 404, 409, 422), bad
        assert secret not in response.content


def test_counting_refuses_an_upload_name_that_is_a_path(client, store: LabelStore):
    done_abundance_job(store)
    for bad in ("../../etc/passwd", "..", "a/b"):
        body = {"classify_job": JOB_ID, "human": bad}
        assert client.post("/api/jobs/abundance", json=body).status_code == 422


@pytest.mark.parametrize("bad", ["/tmp/x", "../../..", ".hidden"])
def test_training_refuses_a_class_name_that_is_a_path(client, store: LabelStore, bad):
    store.set_labels([1], "dark", user="anna")
    response = client.post("/api/jobs/train", json={"classes": ["dark", bad]})
    assert response.status_code == 400
    assert "class name" in response.json()["detail"]
    assert not any((store.project_dir / "jobs").iterdir())


@pytest.mark.parametrize("route", [f"/api/jobs/{JOB_ID}/stop", "/api/presence"])
def test_stop_and_heartbeat_refuse_bodies_over_the_cap(client, store: LabelStore, route):
    before = files_under(store.project_dir)
    body = b'{"x": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    response = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert files_under(store.project_dir) == before


def test_stop_is_refused_for_a_job_that_does_not_watch(client, store: LabelStore):
    folder = done_abundance_job(store)
    response = client.post(f"/api/jobs/{JOB_ID}/stop")
    assert response.status_code == 409
    assert not (folder / "stop").exists()


def test_the_heartbeat_from_another_host_is_refused(store: LabelStore):
    client = TestClient(create_app(store.project_dir), base_url="http://10.0.0.1:8765")
    assert client.post("/api/presence").status_code == 400
    assert not (store.project_dir / "sessions.json").exists()
