"""One user at a time: a second browser on the same project is told about the first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from foramflow.label.app import create_app
from foramflow.label.presence import ACTIVE_S, SESSION_COOKIE, Presence
from foramflow.label.store import LabelStore

LOCAL = "http://127.0.0.1"


def test_a_second_browser_hears_of_the_first_and_the_first_of_the_second(store: LabelStore):
    first = TestClient(create_app(store.project_dir), base_url=LOCAL)
    second = TestClient(create_app(store.project_dir), base_url=LOCAL)  # another server too
    alone = first.post("/api/presence")
    assert alone.status_code == 200 and alone.json() == {"others": []}
    assert len(first.cookies[SESSION_COOKIE]) == 32
    since = second.post("/api/presence").json()["others"]
    assert len(since) == 1 and datetime.fromisoformat(since[0]["since"])
    assert len(first.post("/api/presence").json()["others"]) == 1
    assert first.cookies[SESSION_COOKIE] != second.cookies[SESSION_COOKIE]


def test_the_same_browser_is_one_session(store: LabelStore):
    client = TestClient(create_app(store.project_dir), base_url=LOCAL)
    for _ in range(3):
        assert client.post("/api/presence").json() == {"others": []}


def test_a_session_silent_for_a_minute_is_no_longer_open(tmp_path):
    presence = Presence(tmp_path)
    start = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
    presence.beat("a" * 32, now=start)
    later = start + timedelta(seconds=ACTIVE_S - 1)
    assert presence.beat("b" * 32, now=later) == [{"since": start.isoformat()}]
    gone = start + timedelta(seconds=ACTIVE_S + 1)
    assert presence.beat("c" * 32, now=gone) == [{"since": later.isoformat()}]


def test_a_forged_session_cookie_is_replaced(store: LabelStore):
    client = TestClient(create_app(store.project_dir), base_url=LOCAL)
    response = client.post("/api/presence", headers={"Cookie": f"{SESSION_COOKIE}=../../etc"})
    assert response.json() == {"others": []}
    assert len(response.cookies[SESSION_COOKIE]) == 32
    assert "../../etc" not in (store.project_dir / "sessions.json").read_text()


def test_every_page_carries_the_navigation_with_itself_marked(store: LabelStore):
    client = TestClient(create_app(store.project_dir), base_url=LOCAL)
    pages = {"/": "label", "/import": "import", "/train": "train", "/classify": "classify"}
    pages |= {"/count": "count", "/stats": "stats"}
    for route, page in pages.items():
        html = client.get(route).text
        for link in ("/import", "/", "/train", "/classify", "/count", "/stats"):
            assert f'<a href="{link}"' in html, (route, link)
        assert f'data-page="{page}" class="active"' in html
        assert html.count('class="active"') == 1 and "{{" not in html
        assert 'id="presence"' in html
