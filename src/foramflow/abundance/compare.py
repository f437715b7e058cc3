"""Agreement between automatic and human relative abundances.

Human counts come as a CSV, one row per sample: a ``sample`` column, optional ``depth`` and
``age`` columns (also with a unit suffix: ``depth_m``, ``depth_cm``, ``age_ka``), and one column
of counts per taxon. Taxon columns may be classifier classes
or group names; the same groups file turns them into the same reported groups, so both
sides share one denominator definition. Samples are matched by name.

Agreement per taxon: mean absolute difference and mean difference (automatic − human) in
percentage points, and Pearson's correlation of the two down-core curves. Per sample:
Bray–Curtis dissimilarity of the two assemblages (Bray & Curtis 1957), the usual measure of
compositional difference in ecology: 0 for identical relative abundances, 1 for no taxon in
common.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import braycurtis

POSITION_COLUMNS = ("depth", "age")


def _position_name(column: str) -> str | None:
    """'depth' for depth, Depth_m, depth_cm …; 'age' likewise; None for a taxon column."""
    base = str(column).strip().lower().split("_", 1)[0].split(" ", 1)[0]
    return base if base in POSITION_COLUMNS else None


def read_human_counts(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a human counts CSV into ``(counts, positions)``, both indexed by sample."""
    table = pd.read_csv(path)
    if "sample" not in table.columns:
        raise ValueError(f"{path}: human counts need a 'sample' column")
    table["sample"] = table["sample"].astype(str)
    table = table.set_index("sample")
    named = {c: _position_name(c) for c in table.columns if _position_name(c)}
    if len(set(named.values())) < len(named):
        raise ValueError(f"{path}: more than one depth or age column ({', '.join(named)})")
    positions = table[list(named)].astype(float).rename(columns=named)
    counts = table.drop(columns=list(named))
    numeric = counts.apply(pd.to_numeric, errors="coerce")
    bad = [c for c in counts.columns if numeric[c].isna().any()]
    if bad:
        raise ValueError(f"{path}: non-numeric counts in column(s) {', '.join(map(str, bad))}")
    if (numeric < 0).any().any():
        raise ValueError(f"{path}: negative counts")
    return numeric.round().astype(int), positions


def _paired(automatic: pd.DataFrame, human: pd.DataFrame) -> pd.DataFrame:
    """Automatic and human fractions side by side for the samples and taxa they share."""
    keys = ["sample", "taxon"]
    return (
        automatic[[*keys, "fraction"]]
        .merge(human[[*keys, "fraction"]], on=keys, suffixes=("_auto", "_human"))
        .dropna()
    )


def agreement_by_taxon(automatic: pd.DataFrame, human: pd.DataFrame) -> pd.DataFrame:
    """Per taxon: samples compared, mean (absolute) difference in points, Pearson r."""
    paired = _paired(automatic, human)
    rows = {}
    for taxon, group in paired.groupby("taxon", sort=False):
        diff = 100.0 * (group["fraction_auto"] - group["fraction_human"])
        a, h = group["fraction_auto"].to_numpy(), group["fraction_human"].to_numpy()
        varies = len(group) >= 3 and np.ptp(a) > 0 and np.ptp(h) > 0
        rows[taxon] = {
            "samples": len(group),
            "mean_abs_difference_pp": diff.abs().mean(),
            "mean_difference_pp": diff.mean(),
            "pearson_r": stats.pearsonr(a, h).statistic if varies else np.nan,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("taxon")


def agreement_by_sample(automatic: pd.DataFrame, human: pd.DataFrame) -> pd.DataFrame:
    """Per sample: Bray–Curtis dissimilarity over the taxa both sides report."""
    paired = _paired(automatic, human)
    rows = {
        sample: {
            "taxa": len(group),
            "bray_curtis": braycurtis(group["fraction_auto"], group["fraction_human"]),
        }
        for sample, group in paired.groupby("sample", sort=False)
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("sample")
