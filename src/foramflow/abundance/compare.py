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

from foramflow.abundance.inputs import AbundanceError, read_csv_table

POSITION_COLUMNS = ("depth", "age")


def _position_name(column: str) -> str | None:
    """'depth' for depth, Depth_m, depth_cm …; 'age' likewise; None for a taxon column."""
    base = str(column).strip().lower().split("_", 1)[0].split(" ", 1)[0]
    return base if base in POSITION_COLUMNS else None


def position_unit(column: str) -> str | None:
    """The unit a position column's name carries: 'm' for ``depth_m``, None for ``depth``."""
    parts = str(column).strip().split("_", 1)
    return parts[1].strip() or None if len(parts) == 2 else None


#: Largest count, depth or age a table may give: more specimens than anyone counts, deeper
#: than any core; beyond it a value is a typing error (and sums of it overflow).
MAX_VALUE = 1e9


def read_human_counts(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a human counts CSV into ``(counts, positions)``, both indexed by sample.

    The depth column's unit, where its name gives one (``depth_cm``), is kept in
    ``positions.attrs["depth_unit"]``.

    Each sample has one row with at least one specimen counted: a repeated row would be
    counted twice, and a row of zeros has no relative abundances to compare.
    """
    table = read_csv_table(path, "human counts")
    if "sample" not in table.columns:
        raise AbundanceError(f"{path}: human counts need a 'sample' column")
    if table.empty:
        raise AbundanceError(f"{path}: a header but no rows of human counts")
    table["sample"] = table["sample"].astype(str)
    _refuse_repeated_samples(path, table["sample"])
    named = {c: _position_name(c) for c in table.columns if _position_name(c)}
    if len(set(named.values())) < len(named):
        raise AbundanceError(f"{path}: more than one depth or age column ({', '.join(named)})")
    positions = _numeric_columns(
        path, table[list(named)], "depth or age values", blanks=True
    ).rename(columns=named)
    counts = _numeric_columns(path, table.drop(columns=["sample", *named]), "counts", blanks=False)
    if counts.columns.empty:
        raise AbundanceError(f"{path}: no column of counts (one column per taxon)")
    _refuse_bad_rows(path, counts, table["sample"])
    by_sample = pd.Index(table["sample"], name="sample")
    positions = positions.set_axis(by_sample)
    depth_columns = [c for c, name in named.items() if name == "depth"]
    if depth_columns:
        positions.attrs["depth_unit"] = position_unit(depth_columns[0])
    return counts.round().astype(int).set_axis(by_sample), positions


def _numeric_columns(path, columns: pd.DataFrame, what: str, *, blanks: bool) -> pd.DataFrame:
    """The columns as numbers; a text value, or a blank where ``blanks`` is False, is refused."""
    numeric = columns.apply(pd.to_numeric, errors="coerce").astype(float)
    refused = numeric.isna() & (columns.notna() | (not blanks))
    bad = [c for c in columns.columns if refused[c].any()]
    if bad:
        raise AbundanceError(f"{path}: non-numeric {what} in column(s) {', '.join(map(str, bad))}")
    huge = numeric.abs() > MAX_VALUE
    bad = [c for c in columns.columns if huge[c].any()]
    if bad:
        raise AbundanceError(
            f"{path}: {what} over {MAX_VALUE:.0e} or infinite in column(s) "
            f"{', '.join(map(str, bad))}"
        )
    return numeric


def _refuse_repeated_samples(path, samples: pd.Series) -> None:
    """Samples are matched by name: a name on two rows would be counted twice."""
    repeated = samples[samples.duplicated(keep=False)]
    if repeated.empty:
        return
    where = [
        f"sample {name!r} is on lines {_and_list(lines.index)}"
        for name, lines in repeated.groupby(repeated, sort=False)
    ]
    raise AbundanceError(f"{path}: {'; '.join(where)} (one row per sample)")


def _refuse_bad_rows(path, counts: pd.DataFrame, samples: pd.Series) -> None:
    """A negative count is a typing error; a row of zeros has no relative abundances."""
    for line, row in counts.iterrows():
        if (row < 0).any():
            raise AbundanceError(f"{path}: line {line} (sample {samples[line]!r}): negative count")
        if row.sum() == 0:
            raise AbundanceError(
                f"{path}: line {line} (sample {samples[line]!r}): every count is zero "
                "(a sample needs at least one specimen counted)"
            )


def _and_list(items) -> str:
    """'2 and 5', '2, 5 and 7'."""
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def split_known_taxa(counts: pd.DataFrame, known: set[str]) -> tuple[pd.DataFrame, list[str]]:
    """The human counts of the taxa in ``known``, and the columns that name none of them.

    A column that names no class or group of the predictions has no automatic counterpart;
    kept, it would only enlarge the human denominator.
    """
    unknown = [c for c in counts.columns if c not in known]
    return counts.drop(columns=unknown), unknown


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
