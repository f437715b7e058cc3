"""End to end in a real headless browser (Debian's chromium driven by Playwright).

Open a project, label 10 images with the keyboard, undo one, watch the counts, export, and
check the exported folders. A screenshot is kept in build/test-artifacts/label-grid.png.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from browser_kit import VIEWPORT, chromium, needs_chromium, serve
from foramflow.label.store import LabelStore

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"

pytestmark = needs_chromium


@pytest.fixture
def served(store: LabelStore):
    with serve(store.project_dir) as url:
        yield url + "/"


@pytest.fixture
def page(served):
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(served)
        page.wait_for_selector("body[data-ready='1']")
        yield page


def count(page, label: str) -> int:
    return int(page.text_content(f"#classes li[data-class='{label}'] [data-count=validated]"))


def test_label_undo_export(page, store: LabelStore):
    store.create_class("dark")  # key 1
    store.create_class("bright")  # key 2
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator(".tile").count() == 12

    # Tiles are in id order: S1 p00..p05 then S2 p00..p05; odd files are bright.
    for i in range(10):
        key = "2" if i % 2 else "1"
        page.keyboard.press(key)
        page.wait_for_selector(f".tile[data-index='{i}'][data-status='validated']")
    page.wait_for_function(
        "document.querySelector(\"li[data-class='dark'] .n-valid\").textContent === '5'"
    )
    assert (count(page, "dark"), count(page, "bright")) == (5, 5)

    page.keyboard.press("u")  # undo the last label (tile 9, bright)
    page.wait_for_selector(".tile[data-index='9'][data-status='unlabelled']")
    page.wait_for_function(
        "document.querySelector(\"li[data-class='bright'] .n-valid\").textContent === '4'"
    )
    assert (count(page, "dark"), count(page, "bright")) == (5, 4)
    assert page.locator("#classes li.below").count() == 2  # both under 200 images

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "label-grid.png"))

    page.select_option("#export-kind", "training-set")
    page.click("#export")
    page.wait_for_selector("#toast.show:has-text('exported to')")
    dest = Path(page.text_content("#toast").removeprefix("exported to ").strip())
    exported = {p.name: sorted(f.name for f in p.iterdir()) for p in dest.iterdir() if p.is_dir()}
    assert exported == {
        "dark": [f"S1_10cm__p0{i}.png" for i in (0, 2, 4)]
        + ["S2_20cm__p00.png", "S2_20cm__p02.png"],
        "bright": [f"S1_10cm__p0{i}.png" for i in (1, 3, 5)] + ["S2_20cm__p01.png"],
    }
    shutil.rmtree(dest)
