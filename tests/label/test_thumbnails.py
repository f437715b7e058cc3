"""Thumbnails: small, faithful, and decoded at most two at a time whatever is asked."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from foramflow.label import app as label_app
from foramflow.label.app import THUMB_PIXELS, THUMBNAILS_AT_ONCE, create_app
from foramflow.label.store import LabelStore


@pytest.fixture
def client(store: LabelStore) -> TestClient:
    return TestClient(create_app(store.project_dir), base_url="http://127.0.0.1")


def test_a_thumbnail_keeps_the_image_brightness(client: TestClient, store: LabelStore):
    thumb = Image.open(io.BytesIO(client.get("/api/images/2/thumb").content))
    assert max(thumb.size) <= THUMB_PIXELS
    original = np.asarray(Image.open(store.image_path(2)), float)
    assert abs(np.asarray(thumb.convert("L"), float).mean() - original.mean()) < 3


def test_thumbnails_are_decoded_at_most_two_at_a_time(client: TestClient, monkeypatch):
    """Twelve requests at once: never more than THUMBNAILS_AT_ONCE decodings together."""
    decoding, most, lock = 0, 0, threading.Lock()
    real = label_app.read_thumbnail

    def counted(path, size):
        nonlocal decoding, most
        with lock:
            decoding += 1
            most = max(most, decoding)
        time.sleep(0.05)
        try:
            return real(path, size)
        finally:
            with lock:
                decoding -= 1

    monkeypatch.setattr(label_app, "read_thumbnail", counted)
    with ThreadPoolExecutor(12) as pool:
        codes = list(
            pool.map(lambda i: client.get(f"/api/images/{i}/thumb").status_code, range(1, 13))
        )
    assert codes == [200] * 12
    assert THUMBNAILS_AT_ONCE == 2 and 1 < most <= THUMBNAILS_AT_ONCE
