"""MkDocs hook: ``<!-- result: NAME -->`` in a page becomes the table saved in
``benchmarks/results/NAME.json`` (see ``benchmarks/saved_results.py``), with the command,
machine and commit that made it. A marker naming a missing or malformed file fails the build."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
MARKER = re.compile(r"<!-- result: ([A-Za-z0-9_.-]+) -->")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}".replace(",", " ")
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_{}\[\]|])", r"\\\1", text)  # as written, not as Markdown


def render(name: str) -> str:
    path = RESULTS_DIR / f"{name}.json"
    if not path.is_file():
        raise PluginError(f"results page: {path} is missing")
    record = json.loads(path.read_text(encoding="utf-8"))
    columns, rows = record["columns"], record["rows"]
    if any(len(row) != len(columns) for row in rows):
        raise PluginError(f"{path}: a row does not have {len(columns)} cells")
    machine = record["machine"]
    flags = ", ".join(machine.get("flags", [])) or "none of note"
    lines = [
        f"**{record['title']}**",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows),
        "",
        f"Made by `{record['command']}` on {record['date']}, commit `{record['commit']}`: "
        f"{machine['cpu']} ({machine['cores']} cores; flags: {flags}). "
        f"File: `benchmarks/results/{name}.json`.",
    ]
    if record.get("notes"):
        lines += ["", record["notes"]]
    return "\n".join(lines)


def on_page_markdown(markdown: str, **_) -> str:
    return MARKER.sub(lambda match: render(match.group(1)), markdown)
