"""The train, classify and count pages in a real headless browser (Debian's chromium).

A scripted user trains a tiny model from the app, classifies a two-sample core with it,
corrects one prediction, uploads human counts and downloads the abundance table and figure;
the table must be the one the library's abundance step writes from the same inputs. Each
page is photographed at 1280×800, into docs/images/app-*.png for the manual when
FORAMFLOW_SCREENSHOTS=1 (``make screenshots``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser_kit import (
    VIEWPORT,
    chromium,
    count_beside_human,
    download,
    needs_chromium,
    open_page,
    serve,
)
from browser_kit import wait_for_job as wait_for
from foramflow.abundance.steps import estimate_abundance
from foramflow.label.store import LabelStore

HUMAN_CSV = "sample,depth_cm,dark,bright\nS3_30cm,30,2,2\nS4_40cm,40,3,1\n"
JOB_WAIT_MS = 180_000
SAMPLE_REGEX = r"^(?P<sample>[^/]+_(?P<depth_cm>\d+)cm)/"

pytestmark = needs_chromium


@pytest.fixture
def served(store: LabelStore):
    with serve(store.project_dir) as url:
        yield url


@pytest.fixture
def browser_page(served):
    with chromium() as browser:
        yield browser.new_context(viewport=VIEWPORT, accept_downloads=True).new_page()


def wait_for_job(page, kind: str) -> None:
    wait_for(page, kind, JOB_WAIT_MS)


@pytest.fixture
def core(tmp_path: Path, make_image) -> Path:
    """Two samples of four images: dark and bright squares, as in the training set."""
    import numpy as np

    root = tmp_path / "core"
    for sample in ("S3_30cm", "S4_40cm"):
        for i in range(4):
            make_image(root / sample / f"c{i}.png", np.full((24, 24), 0.8 if i % 2 else 0.2))
    return root


def test_train_classify_count_from_the_browser(
    browser_page, served, store: LabelStore, core: Path, tmp_path: Path, screenshots: Path
):
    page = browser_page
    for row in store.all_rows("id, relpath"):
        bright = int(row["relpath"][-6:-4]) % 2
        store.set_labels([row["id"]], "bright" if bright else "dark", user="anna")

    open_page(page, served, "train")
    assert page.locator("#train-classes input:checked").count() == 2
    page.wait_for_selector("#auto-plan:has-text('model auto would train')")
    page.select_option("#train-form select[name=model]", "base_cyclic")
    for name, value in (("epochs", 2), ("input_size", 16), ("batch_size", 8), ("min_per_class", 2)):
        page.fill(f"#train-form input[name={name}]", str(value))
    page.click("#train-start")
    page.wait_for_selector("#jobs tr[data-kind=train]")
    reopened = page.context.new_page()
    page.close()  # the training goes on without its tab
    page = reopened
    open_page(page, served, "train")
    wait_for_job(page, "train")
    page.wait_for_selector("#classifier:has-text('Project classifier')")
    page.screenshot(path=str(screenshots / "app-train.png"))

    open_page(page, served, "classify")
    page.fill("#classify-form input[name=images]", str(core))
    page.fill("#classify-form input[name=sample_regex]", SAMPLE_REGEX)
    page.fill("#classify-form input[name=threshold]", "0")  # every image gets a class
    page.click("#classify-start")
    wait_for_job(page, "classify")
    page.wait_for_selector("#samples tr[data-sample='S3_30cm']")
    page.click("#samples tr[data-sample='S3_30cm']")
    page.wait_for_selector("#sample-images .tile >> nth=3")
    first = page.locator("#sample-images .tile").first
    first.locator("select").select_option("bright")
    page.wait_for_selector("#sample-images .tile[data-corrected='1']")
    (image_id,) = [
        r["id"] for r in store.all_rows("id, relpath") if r["relpath"] == "S3_30cm/c0.png"
    ]
    assert store.rows([image_id])[0]["label"] == "bright"  # the correction is a label
    page.click("#curve-box summary")
    page.wait_for_selector("#curve svg circle.point")
    page.screenshot(path=str(screenshots / "app-classify.png"))

    open_page(page, served, "count")
    human = tmp_path / "human.csv"
    human.write_text(HUMAN_CSV)
    got = count_beside_human(page, human, JOB_WAIT_MS)
    table = download(page, "#downloads a[data-file='abundance.csv']", got)
    figure = download(page, "#downloads a[data-file='downcore.png']", got)
    svg = download(page, "#downloads a[data-file='downcore.svg']", got)
    page.wait_for_function("document.querySelector('#figure').naturalWidth > 0")
    page.wait_for_selector("#drift:has-text('Drift:')")
    page.screenshot(path=str(screenshots / "app-count.png"))

    classify_job = page.input_value("#count-source")
    results = store.project_dir / "jobs" / classify_job / "results"
    expected = estimate_abundance(results, tmp_path / "direct", human=human, title="core")
    assert table.read_bytes() == (expected.out / "abundance.csv").read_bytes()
    assert figure.read_bytes().startswith(b"\x89PNG") and b"<svg" in svg.read_bytes()

    open_page(page, served, "stats")
    page.wait_for_selector("#confusion table")
    assert page.locator("#chart-classes .bar").count() == 2
    page.screenshot(path=str(screenshots / "app-stats.png"))
