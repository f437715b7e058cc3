"""Each stage's output scored against the synthetic truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

NO_MATCH = ""
"""True class of a crop that matches no particle of the truth (debris, a piece of one)."""


def match_to_truth(particles: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The true particle behind each segmented one, on one tray image.

    A segmented particle is the true particle whose centre lies nearest its centre of mass,
    if that distance is under half the true particle's radius. Returns ``truth_id`` (-1 for
    none) and ``true_class`` (:data:`NO_MATCH` for none), indexed like ``particles``.
    """
    matched = pd.DataFrame(
        {"truth_id": -1, "true_class": NO_MATCH}, index=particles.index, dtype=object
    )
    if particles.empty or truth.empty:
        return matched.astype({"truth_id": int})
    tree = cKDTree(truth[["x", "y"]].to_numpy())
    distance, nearest = tree.query(particles[["centroid_x_px", "centroid_y_px"]].to_numpy())
    close = distance < 0.5 * truth["radius_px"].to_numpy()[nearest]
    matched.loc[close, "truth_id"] = truth["id"].to_numpy()[nearest[close]]
    matched.loc[close, "true_class"] = truth["class"].to_numpy()[nearest[close]]
    return matched.astype({"truth_id": int})


def image_errors(
    fused: np.ndarray, planes: np.ndarray, sharp: np.ndarray, mask: np.ndarray
) -> dict[str, float]:
    """Mean absolute intensity error on ``mask`` of the fused image and of the best plane."""
    plane_errors = [float(np.abs(plane - sharp)[mask].mean()) for plane in planes]
    return {
        "fused_error": float(np.abs(fused - sharp)[mask].mean()),
        "best_plane_error": min(plane_errors),
        "best_plane": int(np.argmin(plane_errors)),
    }


def long_fractions(wide: pd.DataFrame, taxa: list[str]) -> pd.DataFrame:
    """A samples × taxa table of fractions as rows of (sample, taxon, fraction)."""
    return (
        wide.set_index("sample")[taxa]
        .rename_axis(columns="taxon")
        .stack()
        .rename("fraction")
        .reset_index()
    )


def abundance_errors(estimates: dict[str, pd.DataFrame], truth: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute error against the truth, in percentage points, per taxon and overall.

    ``estimates`` maps a name to a long table (sample, taxon, fraction); ``truth`` is one too.
    Rows: estimates; columns: taxa in truth order, then ``all`` (mean over every sample and
    taxon).
    """
    taxa = list(dict.fromkeys(truth["taxon"]))
    rows = {}
    for name, table in estimates.items():
        paired = table[["sample", "taxon", "fraction"]].merge(
            truth[["sample", "taxon", "fraction"]], on=["sample", "taxon"], suffixes=("", "_true")
        )
        error = 100 * (paired["fraction"] - paired["fraction_true"]).abs()
        per_taxon = error.groupby(paired["taxon"]).mean().reindex(taxa)
        rows[name] = [*per_taxon, error.mean()]
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*taxa, "all"])
