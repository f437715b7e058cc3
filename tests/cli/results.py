"""A classify results folder for commands that read one (abundance)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def write_results(folder: Path) -> Path:
    """Two classified images of sample S1, and a run.json that names no model bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "path": ["S1/a.png", "S1/b.png"],
            "sample": ["S1", "S1"],
            "depth": [1.0, 1.0],
            "class": ["dark", "bright"],
            "score": [0.9, 0.9],
            "status": ["ok", "ok"],
            "error": ["", ""],
            "prob_dark": [0.9, 0.1],
            "prob_bright": [0.1, 0.9],
        }
    ).to_parquet(folder / "predictions.parquet")
    (folder / "run.json").write_text(json.dumps({}))
    return folder
