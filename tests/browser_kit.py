"""What the browser tests of the app share: Debian's Chromium driven by Playwright, the app
served on a free local port, and the steps every page test takes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed (make test installs it as root)"
)


@contextmanager
def serve(project_dir: Path) -> Iterator[str]:
    """The app of ``project_dir`` on a free local port, in a background thread: its URL."""
    import uvicorn

    from foramflow.label.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(project_dir), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def chromium():
    """A headless Chromium (Playwright's Browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(page, base: str, name: str) -> None:
    """Go to the app's page ``name`` and wait until its script has drawn it."""
    page.goto(f"{base}/{name}")
    page.wait_for_selector("body[data-ready='1']")


def wait_for_job(page, kind: str, timeout_ms: int) -> None:
    page.wait_for_selector(f"#jobs tr[data-kind={kind}][data-state=done]", timeout=timeout_ms)


def download(page, selector: str, folder: Path) -> Path:
    """Click a download link; the downloaded file, saved in ``folder``."""
    with page.expect_download() as info:
        page.click(selector)
    target = folder / info.value.suggested_filename
    info.value.save_as(target)
    return target


def count_beside_human(page, human: Path, timeout_ms: int) -> Path:
    """On the count page: upload the human counts ``human`` (a two-sample CSV), run the count
    and wait until its downloads are offered; a new folder to download them into."""
    page.wait_for_selector("#count-source option", state="attached")
    page.set_input_files("#human-file", str(human))
    page.wait_for_selector("#human-state:has-text('2 samples')")
    page.click("#count-start")
    wait_for_job(page, "abundance", timeout_ms)
    page.wait_for_selector("#downloads a[data-file='abundance.csv']")
    folder = human.parent / "downloads"
    folder.mkdir()
    return folder


def write_trays(root: Path, particles: dict[str, int], pixels_per_mm: float) -> Path:
    """One synthetic tray per sample folder, with the number of particles given."""
    from foramflow.data.synthetic import make_slide
    from foramflow.imaging.save import save_image

    for seed, (sample, n) in enumerate(particles.items()):
        slide = make_slide(n_particles=n, pixel_size_um=1000 / pixels_per_mm, seed=seed)
        save_image(root / sample / "tray.png", slide.image)
    return root
