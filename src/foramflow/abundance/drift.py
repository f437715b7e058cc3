"""Per-sample warning when a sample's images look unlike the training set.

A classifier trained on one imaging set-up fails quietly on another (Marchant et al. 2020,
§4): its probabilities drop and its confusions change, so the error correction, fitted on the
validation set, no longer applies. The predictions table has no image features, but the top
probability is a well-established out-of-distribution signal (Hendrycks & Gimpel 2017,
*A baseline for detecting misclassified and out-of-distribution examples*, ICLR).

For each sample we compare the distribution of its images' top probabilities with a reference
by the Kolmogorov–Smirnov distance ``D`` (largest gap between the two cumulative distributions).
``D`` is an effect size that does not grow with the number of images, unlike a p-value, which
with thousands of images would flag every sample. The reference is the validation set's
top-probability quantiles stored with the bundle's temperature (by training, or by
``foramflow calibrate``) when available, else the pooled images of the whole core (then a
flag means "unlike the rest of the core").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from foramflow.io.class_names import UNSURE

DEFAULT_MAX_DISTANCE = 0.25


def drift_table(
    predictions: pd.DataFrame,
    *,
    reference=None,
    max_distance: float = DEFAULT_MAX_DISTANCE,
) -> pd.DataFrame:
    """Drift statistics per sample.

    Parameters
    ----------
    predictions
        Predictions table (``sample``, ``score``, ``status``); failed images are ignored.
    reference
        Reference top probabilities (e.g. validation quantiles); ``None`` uses the whole core.
    max_distance
        Flag samples whose KS distance to the reference exceeds this.

    Returns
    -------
    DataFrame indexed by sample: ``images``, ``mean_top_probability``, ``unsure_fraction``,
    ``ks_distance``, ``flagged``.
    """
    ok = predictions[predictions["status"] != "error"]
    source = "validation set" if reference is not None else "whole core"
    reference = ok["score"].to_numpy(float) if reference is None else np.asarray(reference)
    rows = {}
    for sample, group in ok.groupby("sample", sort=False):
        scores = group["score"].to_numpy(float)
        distance = stats.ks_2samp(scores, reference).statistic
        rows[sample] = {
            "images": len(scores),
            "mean_top_probability": scores.mean(),
            "unsure_fraction": float((group["status"] == UNSURE).mean()),
            "ks_distance": distance,
            "flagged": bool(distance > max_distance),
        }
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("sample")
    table.attrs["reference"] = source
    return table
