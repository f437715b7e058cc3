"""The import page in a real headless browser: a user brings in a folder of trays, previews
one tray, segments them all, labels a few crops and asks for more like one of them.

Screenshots of each step at 1280 × 800 go to docs/images/app-import-*.png, which the
import guide shows, when FORAMFLOW_SCREENSHOTS=1 (``make screenshots``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser_kit import VIEWPORT, chromium, needs_chromium
from foramflow.label.store import LabelStore

PIXELS_PER_MM = 200.0  # synthetic slides have 5 µm pixels
PARTICLES = {"core1_10cm": 6, "core1_20cm": 4}

pytestmark = needs_chromium


@pytest.fixture
def page(served_project):
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{served_project}/import")
        page.wait_for_selector("body[data-ready='1']")
        yield page


def shot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"app-import-{name}.png"))


def test_import_trays_preview_segment_label(
    page, served_project, trays: Path, project: Path, screenshots: Path
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
