"""Labelling app at scale: time to open a 100 000-image project and per-page grid latency.

Builds a throw-away project of N tiny PNG files (100 samples), registers them, stores
predictions for half of them and labels for a tenth, then measures, in one process:

* adding the images (folder walk, image headers, inserts);
* opening the project: a new store and app, then the page's first requests
  (``/``, ``/api/project``, ``/api/classes``, the first grid page);
* p50 / p95 milliseconds per grid page (200 rows), unfiltered at random offsets and
  filtered by class, status and sample; requests go through the ASGI stack in-process.

Usage: python benchmarks/bench_label.py [N]
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from foramflow.label.app import create_app
from foramflow.label.store import LabelStore


def make_images(root: Path, n: int, samples: int = 100) -> None:
    rng = np.random.default_rng(0)
    variants = []
    for _ in range(16):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(buffer, "PNG")
        variants.append(buffer.getvalue())
    per_sample = n // samples
    for s in range(samples):
        folder = root / f"core_{s * 10}cm"
        folder.mkdir(parents=True)
        for i in range(per_sample):
            (folder / f"p{i:05d}.png").write_bytes(variants[i % 16])


def percentiles(times: list[float]) -> str:
    ms = np.array(times) * 1000
    return f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms"


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_images(tmp / "images", n)
        print(f"wrote {n} images in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        store = LabelStore(tmp / "project")
        added, _ = store.add_images(tmp / "images")
        print(f"add_images: {added} images registered in {time.perf_counter() - t0:.1f} s")

        rng = np.random.default_rng(1)
        classes = [f"class_{k:02d}" for k in range(20)]
        ids = np.arange(1, added + 1)
        predicted = rng.choice(ids, added // 2, replace=False)
        store.set_predictions(
            [(int(i), classes[int(i) % 20], 0.5 + 0.5 * rng.random(), 0.3) for i in predicted],
            model="bench",
        )
        for k, chunk in enumerate(np.array_split(rng.choice(ids, added // 10, replace=False), 20)):
            store.set_labels(chunk.tolist(), classes[k], user="bench")

        opens = []
        for _ in range(5):
            t0 = time.perf_counter()
            client = TestClient(create_app(tmp / "project"), base_url="http://127.0.0.1")
            for path in ("/", "/api/project", "/api/classes", "/api/images?limit=200"):
                assert client.get(path).status_code == 200
            opens.append(time.perf_counter() - t0)
        print(
            f"open project ({added} images): median {np.median(opens) * 1000:.0f} ms "
            f"(min {min(opens) * 1000:.0f}, max {max(opens) * 1000:.0f}) over 5 opens"
        )

        filters = {
            "unfiltered": {},
            "class filter": {"label": classes[3]},
            "status=predicted": {"status": "predicted"},
            "sample filter": {"sample": "core_500cm"},
        }
        for name, where in filters.items():
            total = client.get("/api/images", params={**where, "limit": 1}).json()["total"]
            times = []
            for _ in range(200):
                query = {**where, "limit": 200, "offset": int(rng.integers(0, total - 200))}
                t0 = time.perf_counter()
                response = client.get("/api/images", params=query)
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200 and len(response.json()["items"]) == 200
            print(
                f"grid page of 200 ({name}, {total} matches, random offset): "
                f"{percentiles(times)} over 200 requests"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
