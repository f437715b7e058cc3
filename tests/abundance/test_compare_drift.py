"""Agreement with human counts, and drift flags, on hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from foramflow.abundance.compare import (
    agreement_by_sample,
    agreement_by_taxon,
    read_human_counts,
)
from foramflow.abundance.drift import drift_table
from foramflow.bundle.validation import top_probability_reference


def long_table(fractions: dict) -> pd.DataFrame:
    """{sample: {taxon: fraction}} → long table."""
    rows = [
        {"sample": s, "taxon": t, "fraction": f}
        for s, taxa in fractions.items()
        for t, f in taxa.items()
    ]
    return pd.DataFrame(rows)


def test_agreement_per_taxon_and_sample():
    auto = long_table(
        {
            "s1": {"a": 0.5, "b": 0.5},
            "s2": {"a": 0.6, "b": 0.4},
            "s3": {"a": 0.8, "b": 0.2},
            "s4": {"a": 0.1, "b": 0.9},
        }
    )
    human = long_table(
        {
            "s1": {"a": 0.4, "b": 0.6},
            "s2": {"a": 0.5, "b": 0.5},
            "s3": {"a": 0.7, "b": 0.3},
            "s5": {"a": 0.2, "b": 0.8},
        }
    )
    by_taxon = agreement_by_taxon(auto, human)
    assert by_taxon.loc["a", "samples"] == 3  # s4, s5 not shared
    assert by_taxon.loc["a", "mean_abs_difference_pp"] == pytest.approx(10.0)
    assert by_taxon.loc["a", "mean_difference_pp"] == pytest.approx(10.0)
    assert by_taxon.loc["b", "mean_difference_pp"] == pytest.approx(-10.0)
    assert by_taxon.loc["a", "pearson_r"] == pytest.approx(1.0)  # a constant offset
    by_sample = agreement_by_sample(auto, human)
    # Bray–Curtis: Σ|a − h| / Σ(a + h) = 0.2 / 2.0 for every shared sample.
    assert by_sample["bray_curtis"].to_numpy() == pytest.approx([0.1, 0.1, 0.1])


def test_read_human_counts(tmp_path):
    path = tmp_path / "human.csv"
    path.write_text("sample,depth,G. ruber,fragment\n1,10.5,120,30\n2,20,80,5\n")
    counts, positions = read_human_counts(path)
    assert list(counts.columns) == ["G. ruber", "fragment"]
    assert counts.loc["1", "G. ruber"] == 120
    assert positions.loc["2", "depth"] == 20.0
    path.write_text("sample,G. ruber\n1,many\n")
    with pytest.raises(ValueError, match="non-numeric counts in column"):
        read_human_counts(path)


def test_depth_and_age_columns_with_units_are_positions_not_taxa(tmp_path):
    path = tmp_path / "human.csv"
    path.write_text("sample,depth_m,Age_ka,G. ruber,Agedorsalis\n1,0.5,12,120,3\n")
    counts, positions = read_human_counts(path)
    assert list(counts.columns) == ["G. ruber", "Agedorsalis"]
    assert positions.loc["1"].to_dict() == {"depth": 0.5, "age": 12.0}
    path.write_text("sample,depth,depth_m,G. ruber\n1,0.5,0.5,120\n")
    with pytest.raises(ValueError, match="more than one depth or age column"):
        read_human_counts(path)


def test_drift_flags_only_the_unlike_sample(make_predictions):
    rng = np.random.default_rng(0)
    reference_scores = rng.beta(8, 1, 2000)  # confident, like the validation set
    rows = []
    for sample, (a, b) in {"s1": (8, 1), "s2": (8, 1), "odd": (3, 2)}.items():
        for score in rng.beta(a, b, 400):
            rest = (1 - score) / 2
            rows.append((sample, 1.0, "dark", [score, rest, rest]))
    table = drift_table(
        make_predictions(rows), reference=top_probability_reference(reference_scores)
    )
    assert table["flagged"].to_dict() == {"s1": False, "s2": False, "odd": True}
    assert table.loc["odd", "mean_top_probability"] < table.loc["s1", "mean_top_probability"]
    assert table.attrs["reference"] == "validation set"
    # Without a validation reference the core itself is the reference.
    core = drift_table(make_predictions(rows), max_distance=0.3)
    assert core["flagged"].to_dict() == {"s1": False, "s2": False, "odd": True}
