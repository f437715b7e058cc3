"""The whole method in one project, in a real headless browser (Debian's chromium).

A scripted user imports a folder of two synthetic trays (particle counts known) and
segments them, labels the crops small or large by their measured area, trains a tiny model,
classifies the two-sample core the trays make, uploads human counts, and downloads the
abundance table and the figure: the table must be the one the library's abundance step
writes from the same inputs. On the way, a second browser opening the project is told that
it is open elsewhere, and the down-core figure answers a hover and a click. Screenshots of
the labelling and count pages at 1280×800 go to docs/images/ with FORAMFLOW_SCREENSHOTS=1.
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
)
from browser_kit import wait_for_job as wait_for
from foramflow.abundance.steps import estimate_abundance
from foramflow.label.store import LabelStore

PIXELS_PER_MM = 200.0  # synthetic slides have 5 µm pixels
PARTICLES = {"core1_10cm": 14, "core1_20cm": 14}  # all found by the segment step
SAMPLE_REGEX = r"(?P<sample>core\d+_(?P<depth_cm>\d+)cm)"
HUMAN_CSV = "sample,depth_cm,small,large\ncore1_10cm,10,8,6\ncore1_20cm,20,5,7\n"
JOB_WAIT_MS = 120_000

pytestmark = needs_chromium


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


def wait_for_job(page, kind: str) -> None:
    wait_for(page, kind, JOB_WAIT_MS)


LABEL_BY_AREA = """async () => {
  const measured = await (await fetch("/api/morphology?sort=area_um2&limit=1000")).json();
  const ids = measured.items.map((item) => item.id);
  const half = Math.floor(ids.length / 2);
  for (const [label, chosen] of [["small", ids.slice(0, half)], ["large", ids.slice(half)]]) {
    const response = await fetch("/api/labels", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids: chosen, label }),
    });
    if (!response.ok) throw new Error(await response.text());
  }
  return ids.length;
}"""


def test_a_project_from_trays_to_abundances_in_the_browser(
    browser, served_project, trays: Path, project: Path, tmp_path: Path, screenshots: Path
):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    total = sum(PARTICLES.values())

    # import: segment the trays, samples and depths from the folder names
    open_page(page, served_project, "import")
    page.select_option("#kind", "trays")
    page.fill("#folder", str(trays))
    page.fill("#ppm", str(PIXELS_PER_MM))
    page.check("input[name=rule][value=regex]")
    page.fill("#regex", SAMPLE_REGEX)
    page.click("#run-import")
    page.wait_for_selector(f"#result:has-text('2 trays cut into {total} crops')", timeout=60_000)
    store = LabelStore(project)
    assert store.samples() == list(PARTICLES)

    # label: the smaller half small, the rest large, from the page, then seen on the label page
    page.click("nav.site a[data-page=label]")
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate(LABEL_BY_AREA) == total
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector(f"li[data-class='small'] .n-valid:text-is('{total // 2}')")
    page.wait_for_selector(f"li[data-class='large'] .n-valid:text-is('{total - total // 2}')")

    # a second browser on the same project is told, plainly
    other = browser.new_context(viewport=VIEWPORT).new_page()
    open_page(other, served_project, "")
    other.wait_for_selector("#presence:has-text('open in another window since')")
    page.screenshot(path=str(screenshots / "app-label.png"))
    other.context.close()

    # train a tiny model
    page.click("nav.site a[data-page=train]")
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("#auto-plan:has-text('model auto would train')")
    page.select_option("#train-form select[name=model]", "base_cyclic")
    for name, value in (("epochs", 1), ("input_size", 16), ("batch_size", 8), ("min_per_class", 2)):
        page.fill(f"#train-form input[name={name}]", str(value))
    page.click("#train-start")
    wait_for_job(page, "train")
    page.wait_for_selector("#classifier:has-text('Project classifier')")

    # classify the two-sample core the trays made, progress per sample
    (crops,) = (project / "imports").glob("segment*")
    page.click("nav.site a[data-page=classify]")
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#classify-form input[name=images]", str(crops))
    page.fill("#classify-form input[name=sample_regex]", SAMPLE_REGEX)
    page.fill("#classify-form input[name=threshold]", "0")
    page.click("#classify-start")
    wait_for_job(page, "classify")
    for sample, n in PARTICLES.items():
        page.wait_for_selector(f"#sample-progress [data-sample='{sample}']:has-text('{n}/{n}')")

    # count beside human counts, download the table and the figure
    page.click("nav.site a[data-page=count]")
    page.wait_for_selector("body[data-ready='1']")
    human = tmp_path / "human.csv"
    human.write_text(HUMAN_CSV)
    got = count_beside_human(page, human, JOB_WAIT_MS)
    table = download(page, "#downloads a[data-file='abundance.csv']", got)
    figure = download(page, "#downloads a[data-file='downcore.svg']", got)

    results = project / "jobs" / page.input_value("#count-source") / "results"
    expected = estimate_abundance(results, tmp_path / "direct", human=human)
    assert table.read_bytes() == (expected.out / "abundance.csv").read_bytes()
    assert b"<svg" in figure.read_bytes()

    # the interactive figure: depth down, a hover gives the values, a click the images
    page.wait_for_selector("#downcore svg[data-axis='depth_cm'] g.point")
    page.locator(
        "#downcore g.point[data-method=human][data-sample='core1_20cm'][data-taxon=small]"
    ).hover()
    page.wait_for_selector("#downcore-info:has-text('core1_20cm (20 cm): small 41.7 %')")
    page.locator("#downcore g.point[data-method=raw][data-sample='core1_10cm']").first.click()
    n = PARTICLES["core1_10cm"]
    page.wait_for_selector(f"#sample-images-count .tile >> nth={n - 1}")
    assert page.locator("#sample-images-count .tile").count() == n
    page.screenshot(path=str(screenshots / "app-downcore.png"), full_page=False)
    context.close()
