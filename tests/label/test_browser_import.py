"""The import page in a real headless browser: a user brings in a folder of trays, previews
one tray, segments them all, labels a few crops and asks for more like one of them.

Screenshots of each step at 1280 × 800 go to docs/images/app-import-*.png, which the
import guide shows, when FORAMFLOW_SCREENSHOTS=1 (``make screenshots``).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from foramflow.data.synthetic import make_slide
from foramflow.imaging.save import save_image
from foramflow.label.app import create_app
from foramflow.label.store import LabelStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
CHROMIUM_ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
PIXELS_PER_MM = 200.0  # synthetic slides have 5 µm pixels
PARTICLES = {"core1_10cm": 6, "core1_20cm": 4}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed (make test installs it as root)"
)


@pytest.fixture
def trays(tmp_path: Path) -> Path:
    root = tmp_path / "trays"
    for seed, (sample, n) in enumerate(PARTICLES.items()):
        slide = make_slide(n_particles=n, pixel_size_um=1000 / PIXELS_PER_MM, seed=seed)
        save_image(root / sample / "tray.png", slide.image)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tmp_path / "project"


@pytest.fixture
def served(project: Path):
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(project), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(served):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{served}/import")
        page.wait_for_selector("body[data-ready='1']")
        yield page
        browser.close()


def shot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"app-import-{name}.png"))


def test_import_trays_preview_segment_label(
    page, served, trays: Path, project: Path, screenshots: Path
):
    page.select_option("#kind", "trays")
    page.fill("#folder", str(trays))
    page.fill("#ppm", str(PIXELS_PER_MM))
    page.check("input[name=rule][value=regex]")
    page.fill("#regex", r"(?P<sample>core\d+_\d+cm)")
    page.click("#preview-samples")
    page.wait_for_selector("#samples-preview:not([hidden])")
    samples = page.locator("#samples-table tbody tr").all_inner_texts()
    assert [s.split("\t")[0] for s in samples] == list(PARTICLES)

    page.click("#preview-tray")
    page.wait_for_selector("#tray-figure:not([hidden])")
    caption = page.text_content("#tray-count")
    assert caption == f"core1_10cm/tray.png: {PARTICLES['core1_10cm']} particles (1 of 2 trays)"
    assert LabelStore(project).count() == 0  # the preview added nothing
    shot(page, screenshots, "preview")

    page.click("#run-import")
    total = sum(PARTICLES.values())
    page.wait_for_selector(f"#result:has-text('2 trays cut into {total} crops')", timeout=60_000)
    page.wait_for_selector(f"#particles-total:has-text('{total} images')")
    assert page.locator("#particles tbody tr").count() == total

    page.click("#particles th[data-sort='area_um2']")  # ascending, then descending
    page.wait_for_selector("#particles th[data-sort='area_um2'].sorted:not(.desc)")
    page.click("#particles th[data-sort='area_um2']")
    page.wait_for_selector("#particles th[data-sort='area_um2'].sorted.desc")
    areas = [
        float(t) for t in page.locator("#particles tbody tr td:nth-child(6)").all_inner_texts()
    ]
    assert areas == sorted(areas, reverse=True)
    shot(page, screenshots, "particles")

    # the largest crop and the two nearest to it, labelled through "more like this"
    page.locator("#particles tbody tr button.similar").first.click()
    page.wait_for_selector("#similar:not([hidden])")
    assert page.text_content("#suggestions") == "no validated neighbours yet"
    first_id = int(page.locator("#particles tbody tr").first.get_attribute("data-id"))
    tiles = page.locator("#similar-tiles img")
    neighbours = [int(tiles.nth(k).get_attribute("data-id")) for k in (0, 1)]
    tiles.nth(0).click()
    tiles.nth(1).click()
    page.fill("#similar-label", "big")
    page.click("#label-similar")
    page.wait_for_selector("#toast:has-text('3 images labelled big')")
    expect = pytest.importorskip("playwright.sync_api").expect  # waits for the refresh
    expect(page.locator("#particles tbody tr[data-label='big']")).to_have_count(3)
    unlabelled = page.locator("#particles tbody tr[data-label='']").first
    unlabelled.locator("button.similar").click()
    page.wait_for_selector("#suggestions span:has-text('big 100 %')")
    shot(page, screenshots, "similar")

    store = LabelStore(project)
    labelled = sorted(r["id"] for r in store.all_rows("id, label") if r["label"] == "big")
    assert labelled == sorted([first_id, *neighbours])
    assert store.samples() == list(PARTICLES)
