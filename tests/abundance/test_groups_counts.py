"""Group, abundance and ratio arithmetic on a hand-made predictions table."""

import numpy as np
import pandas as pd
import pytest

from foramflow.abundance.counts import (
    class_counts,
    depth_to_age,
    ratios,
    read_age_model,
    relative_abundance,
    sample_positions,
)
from foramflow.abundance.groups import Grouping, GroupingError, Ratio

ONE_HOT = {"dark": [1, 0, 0], "mid": [0, 1, 0], "bright": [0, 0, 1]}


@pytest.fixture
def predictions(make_predictions):
    # Sample A (depth 20): 6 dark, 2 mid, 2 bright, 3 unsure, 1 error.
    # Sample B (depth 10): 1 dark, 3 mid, 0 bright, 1 unsure.
    rows = (
        [("A", 20.0, "dark", ONE_HOT["dark"])] * 6
        + [("A", 20.0, "mid", ONE_HOT["mid"])] * 2
        + [("A", 20.0, "bright", ONE_HOT["bright"])] * 2
        + [("A", 20.0, "unsure", [0.4, 0.3, 0.3])] * 3
        + [("A", 20.0, "", None)]
        + [("B", 10.0, "dark", ONE_HOT["dark"])]
        + [("B", 10.0, "mid", ONE_HOT["mid"])] * 3
        + [("B", 10.0, "unsure", [0.3, 0.4, 0.3])]
    )
    return make_predictions(rows)


def test_class_counts_and_positions(predictions):
    counts = class_counts(predictions, ["dark", "mid", "bright"])
    assert counts.loc["A"].to_dict() == {"dark": 6, "mid": 2, "bright": 2, "unsure": 3}
    assert counts.loc["B"].to_dict() == {"dark": 1, "mid": 3, "bright": 0, "unsure": 1}
    assert list(sample_positions(predictions).index) == ["B", "A"]  # sorted by depth


def test_grouped_relative_abundance(predictions):
    grouping = Grouping(groups={"not dark": ["mid", "bright"]}, exclude=("unsure",))
    table = relative_abundance(class_counts(predictions, ["dark", "mid", "bright"]), grouping)
    a = table[table["sample"] == "A"].set_index("taxon")
    assert list(a.index) == ["not dark", "dark"]  # groups-file order first
    assert a.loc["dark", "fraction"] == pytest.approx(6 / 10)
    assert a.loc["not dark", "fraction"] == pytest.approx(4 / 10)
    assert (a["total"] == 10).all()
    assert (a["low"] < a["fraction"]).all() and (a["fraction"] < a["high"]).all()


def test_excluding_a_class_removes_it_from_the_denominator(predictions):
    counts = class_counts(predictions, ["dark", "mid", "bright"])
    table = relative_abundance(counts, Grouping(exclude=("unsure", "bright"))).set_index(
        ["sample", "taxon"]
    )
    assert ("A", "bright") not in table.index
    assert table.loc[("A", "dark"), "fraction"] == pytest.approx(6 / 8)
    assert table.loc[("B", "mid"), "fraction"] == pytest.approx(3 / 4)


def test_ratios_proportion_and_odds(predictions):
    grouping = Grouping(groups={"light": ["mid", "bright"]})
    counts = class_counts(predictions, ["dark", "mid", "bright"])
    table = ratios(
        counts,
        grouping,
        [Ratio.parse("dark share = dark / dark+light"), Ratio.parse("dark:light=dark/light")],
    ).set_index(["sample", "ratio"])
    assert table.loc[("A", "dark share"), "value"] == pytest.approx(6 / 10)
    assert table.loc[("A", "dark:light"), "value"] == pytest.approx(6 / 4)
    assert table.loc[("B", "dark:light"), "value"] == pytest.approx(1 / 3)
    assert table.loc[("A", "dark share"), "denominator"] == 10
    for key in table.index:
        assert table.loc[key, "low"] < table.loc[key, "value"] < table.loc[key, "high"]


def test_ratio_with_unsure_counts_excluded_classes(predictions):
    counts = class_counts(predictions, ["dark", "mid", "bright"])
    table = ratios(counts, Grouping(), [Ratio.parse("unsure rate=unsure/unsure+dark+mid+bright")])
    assert table.set_index("sample").loc["A", "value"] == pytest.approx(3 / 13)


def test_ratio_parse_and_overlap_errors():
    ratio = Ratio.parse("b%=benthic/benthic+planktonic")
    assert ratio == Ratio("b%", ("benthic",), ("benthic", "planktonic"))
    with pytest.raises(GroupingError):
        Ratio.parse("no equals sign")
    overlapping = Ratio.parse("x=dark+mid/mid+bright")
    with pytest.raises(GroupingError, match="within the denominator or be disjoint"):
        overlapping.kind(Grouping())


def test_groups_yaml(tmp_path):
    path = tmp_path / "groups.yaml"
    path.write_text("groups:\n  light: [mid, bright]\nexclude: [unsure, fragment]\n")
    grouping = Grouping.from_yaml(path)
    assert grouping.group_of("mid") == "light" and grouping.group_of("dark") == "dark"
    assert grouping.is_excluded("fragment") and not grouping.is_excluded("mid")
    path.write_text("groups:\n  a: [x]\n  b: [x]\n")
    with pytest.raises(GroupingError, match="two groups"):
        Grouping.from_yaml(path)
    path.write_text("grups: {}\n")
    with pytest.raises(GroupingError, match="invalid groups file"):
        Grouping.from_yaml(path)


def test_age_model_interpolation(tmp_path):
    path = tmp_path / "age.csv"
    pd.DataFrame({"depth_cm": [0, 100, 200], "age_ka": [0, 10, 30]}).to_csv(path, index=False)
    model = read_age_model(path)
    ages = depth_to_age([50, 150, 250], model)
    assert ages[:2] == pytest.approx([5, 20])
    assert np.isnan(ages[2])  # outside the model: no extrapolation
