"""The app's HTML pages: each template with the shared navigation bar put in."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"


def render(template: str, page: str) -> str:
    """``template`` with ``{{nav}}`` replaced by the bar (``page`` marked) and ``{{page}}``."""
    mark = f'data-page="{page}"'
    nav = (TEMPLATES / "nav.html").read_text().replace(mark, f'{mark} class="active"', 1)
    html = (TEMPLATES / template).read_text()
    return html.replace("{{nav}}", nav).replace("{{page}}", page)
