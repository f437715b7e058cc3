"""Counts, relative abundances and ratios per sample (method §7).

Tables are pandas objects: a *count table* has one row per sample and one column per class (or
taxon); result tables are long (one row per sample and taxon), ready for CSV and plotting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from foramflow.abundance.groups import Grouping, Ratio
from foramflow.abundance.inputs import AbundanceError, read_csv_table
from foramflow.abundance.intervals import proportion_interval, ratio_interval


def class_counts(predictions: pd.DataFrame, labels: Sequence[str] = ()) -> pd.DataFrame:
    """Images per sample and predicted class (``unsure`` included, failed images left out).

    ``labels`` fixes the first columns (classes never predicted get zeros).
    """
    ok = predictions[predictions["status"] != "error"]
    table = pd.crosstab(ok["sample"], ok["class"]).rename_axis(index="sample", columns=None)
    columns = list(labels) + [c for c in table.columns if c not in labels]
    return table.reindex(columns=columns, fill_value=0).astype(int)


def sample_positions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Depth of each sample (median of its images' depths; NaN where unknown), sorted by depth."""
    depth = predictions.groupby("sample")["depth"].median().rename("depth")
    frame = depth.to_frame()
    return frame.sort_values("depth", kind="stable", na_position="last")


def read_age_model(path: str | Path) -> pd.DataFrame:
    """Read an age model CSV: first column depth, second column age, in the file's own units.

    The column headers become the axis labels (e.g. ``depth_cm,age_ka_BP``).
    """
    table = read_csv_table(path, "depth and age")
    if table.shape[1] < 2:
        raise AbundanceError(f"{path}: an age model needs two columns (depth, age)")
    table = table.iloc[:, :2].apply(pd.to_numeric, errors="coerce").astype(float)
    table = table[np.isfinite(table).all(axis=1)]
    if len(table) < 2:
        raise AbundanceError(f"{path}: an age model needs at least two numeric rows")
    return table.sort_values(table.columns[0]).reset_index(drop=True)


def depth_to_age(depth, age_model: pd.DataFrame) -> np.ndarray:
    """Ages by linear interpolation in the age model; NaN outside its depth range."""
    model_depth, model_age = (age_model.iloc[:, i].to_numpy(float) for i in (0, 1))
    return np.interp(np.asarray(depth, float), model_depth, model_age, left=np.nan, right=np.nan)


def relative_abundance(
    counts: pd.DataFrame,
    grouping: Grouping,
    *,
    level: float = 0.95,
    method: str = "wilson",
) -> pd.DataFrame:
    """Relative abundance of every group per sample, with a binomial confidence interval.

    The denominator is the sum of all non-excluded names. Returns a long table with columns
    ``sample, taxon, count, total, fraction, low, high``.
    """
    names = list(counts.columns)
    groups, matrix = grouping.matrix(names)
    grouped = counts.to_numpy(float) @ matrix
    total = grouped.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = grouped / total
    low, high = proportion_interval(
        grouped, np.broadcast_to(total, grouped.shape), level=level, method=method
    )
    return pd.DataFrame(
        {
            "sample": np.repeat(counts.index.to_numpy(), len(groups)),
            "taxon": np.tile(groups, len(counts)),
            "count": grouped.ravel().astype(int),
            "total": np.broadcast_to(total, grouped.shape).ravel().astype(int),
            "fraction": fraction.ravel(),
            "low": low.ravel(),
            "high": high.ravel(),
        }
    )


def ratios(
    counts: pd.DataFrame,
    grouping: Grouping,
    definitions: Sequence[Ratio],
    *,
    level: float = 0.95,
    method: str = "wilson",
) -> pd.DataFrame:
    """Evaluate ratios per sample from class counts, excluded classes included.

    A ratio whose numerator lies within its denominator is a proportion and gets a binomial
    interval; one with disjoint numerator and denominator (``a / b``) gets the interval of
    ``a / (a + b)`` mapped through ``p / (1 - p)`` (see :func:`ratio_interval`).
    Returns ``sample, ratio, numerator, denominator, value, low, high``.
    """
    rows = []
    for ratio in definitions:
        num_classes, den_classes = ratio.class_sets(grouping)
        num = counts[[c for c in counts.columns if c in num_classes]].sum(axis=1).to_numpy(float)
        den = counts[[c for c in counts.columns if c in den_classes]].sum(axis=1).to_numpy(float)
        if ratio.kind(grouping) == "proportion":
            low, high = proportion_interval(num, den, level=level, method=method)
        else:
            low, high = ratio_interval(num, den, level=level, method=method)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = num / den
        rows.append(
            pd.DataFrame(
                {
                    "sample": counts.index.to_numpy(),
                    "ratio": ratio.name,
                    "numerator": num.astype(int),
                    "denominator": den.astype(int),
                    "value": value,
                    "low": low,
                    "high": high,
                }
            )
        )
    columns = ["sample", "ratio", "numerator", "denominator", "value", "low", "high"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
