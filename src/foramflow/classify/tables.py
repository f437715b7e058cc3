"""The tables a classification run writes: one row per image, and counts per sample.

``predictions.parquet`` columns: path (relative to IMAGES_DIR, POSIX), sample, depth (float64,
null when unknown; named ``depth_<unit>`` on disk when the sample rule states a unit, see
:mod:`foramflow.io.tables`), class (label, "unsure", or "" for errors), score (top
probability, float32, null for errors), prob_<label> for every label in bundle order
(float32, null for errors), status (ok | unsure | error) and error ("" when none).
``counts.csv``: samples × (labels, unsure, error), with depth when known.
``relative_abundance.csv``: the share of each label among the images given a label.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from foramflow.bundle.decisions import ERROR, UNSURE, DecisionRule
from foramflow.classify.samples import printable_name


def prediction_schema(labels: Sequence[str]) -> pa.Schema:
    fields = [
        ("path", pa.string()),
        ("sample", pa.string()),
        ("depth", pa.float64()),
        ("class", pa.string()),
        ("score", pa.float32()),
        *[(f"prob_{label}", pa.float32()) for label in labels],
        ("status", pa.string()),
        ("error", pa.string()),
    ]
    return pa.schema(fields)


def predictions_table(
    records: pd.DataFrame, probs: np.ndarray, errors: Sequence[str | None], rule: DecisionRule
) -> pa.Table:
    """Rows for ``records`` (path, sample, depth): ``probs`` holds one row per image without error.

    ``errors`` has one entry per record: None for an image that was classified, else the reason.
    """
    n, labels = len(records), rule.labels
    failed = np.array([e is not None for e in errors], dtype=bool)
    full = np.full((n, len(labels)), np.nan, dtype=np.float32)
    full[~failed] = probs
    classes = np.full(n, "", dtype=object)
    scores = np.full(n, np.nan, dtype=np.float32)
    status = np.full(n, ERROR, dtype=object)
    if (~failed).any():
        ok_classes, ok_scores, ok_status = rule.decide(probs)
        classes[~failed], scores[~failed], status[~failed] = ok_classes, ok_scores, ok_status
    columns = {
        "path": records["path"].tolist(),
        "sample": records["sample"].tolist(),
        "depth": records["depth"].to_numpy(dtype=np.float64),
        "class": classes.tolist(),
        "score": scores,
        **{f"prob_{label}": full[:, k] for k, label in enumerate(labels)},
        "status": status.tolist(),
        "error": [printable_name(e) if e else "" for e in errors],  # may quote a file name
    }
    return pa.Table.from_pydict(columns, schema=prediction_schema(labels))


class CountTable:
    """Counts per sample and class, built up one chunk of predictions at a time."""

    def __init__(self, labels: Sequence[str]):
        self.labels = list(labels)
        self._counts: pd.DataFrame | None = None
        self._depths: dict[str, float] = {}

    def add(self, table: pa.Table) -> None:
        frame = table.select(["sample", "depth", "class", "status"]).to_pandas()
        category = frame["class"].where(frame["status"] != ERROR, ERROR)
        counts = pd.crosstab(frame["sample"], category)
        self._counts = counts if self._counts is None else self._counts.add(counts, fill_value=0)
        for sample, depth in frame.groupby("sample")["depth"].first().items():
            if not math.isnan(depth) or sample not in self._depths:
                self._depths[sample] = depth

    def counts(self) -> pd.DataFrame:
        """Samples × (depth when known, labels, unsure, error), ordered by depth or name."""
        columns = [*self.labels, UNSURE, ERROR]
        counts = self._counts if self._counts is not None else pd.DataFrame()
        counts = counts.reindex(columns=columns, fill_value=0).fillna(0).astype("int64")
        depths = pd.Series(self._depths, dtype="float64").reindex(counts.index)
        if depths.notna().any():
            counts.insert(0, "depth", depths)
        if depths.notna().all():
            order = sorted(counts.index, key=lambda s: (depths[s], natural_key(s)))
        else:
            order = sorted(counts.index, key=natural_key)
        counts = counts.loc[order]
        counts.index.name = "sample"
        counts.columns.name = None
        return counts.copy()  # in one block: a column per class would leave it fragmented


def relative_abundance(counts: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Share of each label among the images given a label (unsure and errors left out)."""
    labelled = counts[list(labels)]
    shares = labelled.div(labelled.sum(axis=1).replace(0, np.nan), axis=0)
    if "depth" in counts.columns:
        shares.insert(0, "depth", counts["depth"])
    return shares


def natural_key(text: str) -> list:
    """Sort key that puts "S2" before "S10"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(text)]


_DIGITS = re.compile(r"(\d+)")
