"""The demo's report: one self-contained HTML page with every stage's figures and scores."""

from __future__ import annotations

import time
from pathlib import Path

import jinja2
import pandas as pd

from foramflow.classify.results import COUNTS_FILE
from foramflow.evaluate.report import png_data_uri
from foramflow.version import __version__

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("foramflow.demo", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)

ESTIMATE_NAMES = {
    "human count": "human count (300 specimens per sample)",
    "particles on the trays": "particles on the trays, perfectly classified",
    "raw": "automatic: classify and count",
    "acc": "automatic: adjusted count (ACC)",
    "em": "automatic: EM prior",
}

FIGURES = {
    "downcore": "abundance/downcore.png",
    "stacking": "figures/stacking.png",
    "segmentation": "figures/segmentation.png",
    "gallery": "figures/gallery.png",
    "training_curves": "run/evaluation/training_curves.png",
    "validation_confusion": "run/evaluation/confusion_matrix.png",
    "core_confusion": "figures/core_confusion.png",
}
"""The figures the report embeds, relative to the demo folder."""


def write_demo_report(out: Path, state: dict) -> Path:
    """Write ``out/report.html`` from the finished stages recorded in ``state``."""
    stages = state["stages"]
    summary = {name: entry["summary"] for name, entry in stages.items()}
    errors = pd.read_csv(out / "abundance" / "errors_vs_truth.csv", index_col="estimate")
    counts = pd.read_csv(out / "classify" / COUNTS_FILE)
    page = _ENV.get_template("report.html").render(
        title="foramflow demo: a synthetic core from trays to abundances",
        created=time.strftime("%Y-%m-%d %H:%M"),
        version=__version__,
        profile=state["profile"],
        stages=[
            {"folder": name, "title": entry["title"], "seconds": entry["seconds"]}
            for name, entry in stages.items()
        ],
        total_seconds=sum(entry["seconds"] for entry in stages.values()),
        s=summary,
        errors=errors,
        estimate_names=ESTIMATE_NAMES,
        counts=counts,
        stacks=pd.read_csv(out / "stacks" / "stacks.csv"),
        figures={name: png_data_uri(out / path) for name, path in FIGURES.items()},
    )
    path = out / "report.html"
    path.write_text(page)
    return path
