"""The abundance step called from Python: the files of the command, refusals by name."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from abundance.conftest import CONFUSION, rows
from foramflow.abundance.analysis import Confusion, analyse_core
from foramflow.cli import app
from foramflow.errors import ForamflowError
from foramflow.progress import Recorded


def test_estimate_abundance_writes_what_the_command_writes(results, tmp_path):
    from foramflow.abundance.steps import estimate_abundance

    progress = Recorded()
    result = estimate_abundance(results, tmp_path / "python", bootstrap=20, progress=progress)
    command = CliRunner().invoke(
        app, ["abundance", str(results), "--out", str(tmp_path / "cli"), "--bootstrap", "20"]
    )
    assert command.exit_code == 0, command.output
    names = sorted(p.name for p in result.written)
    assert names == sorted(p.name for p in (tmp_path / "python").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert result.bundle == tmp_path / "bundle" and result.report.name == "report.html"
    for name in ("abundance.csv", "class_counts.csv", "drift.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "python" / name), pd.read_csv(tmp_path / "cli" / name)
        )
    assert set(result.analysis.abundance["method"]) == {"raw", "acc", "em"}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"level": 1.5}, r"the confidence level must lie in \(0.5, 1\), not 1.5"),
        ({"interval": "exact"}, "the interval for counts is one of wilson, clopper-pearson"),
        ({"bootstrap": 0}, "at least one bootstrap replicate"),
        ({"ratios": ["x=nosuch/dark"]}, "'nosuch'"),
    ],
)
def test_estimate_abundance_refuses_bad_settings_before_writing(
    results, tmp_path, options, message
):
    from foramflow.abundance.steps import estimate_abundance

    with pytest.raises(ForamflowError, match=message) as caught:
        estimate_abundance(results, tmp_path / "out", **options)
    assert "--" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_missing_predictions_table_is_named(tmp_path):
    from foramflow.abundance.steps import estimate_abundance

    with pytest.raises(ForamflowError, match=r"predictions\.parquet: not found"):
        estimate_abundance(tmp_path, tmp_path / "out")


def test_a_confusion_matrix_without_a_predicted_class_is_refused(make_predictions):
    confusion = Confusion(labels=["dark", "mid"], matrix=np.array([[9, 1], [1, 9]]))
    with pytest.raises(ForamflowError, match=r"lacks class\(es\) \['bright'\]"):
        analyse_core(make_predictions(rows()), confusion=confusion)


def test_the_command_names_the_bundle_whose_confusion_matrix_lacks_a_class(
    results, tmp_path, make_bundle
):
    bundle = make_bundle(tmp_path / "bundle2", confusion=CONFUSION)
    meta = json.loads((bundle / "model.json").read_text())
    meta["validation_confusion"] = {"labels": ["dark", "mid"], "matrix": [[9, 1], [1, 9]]}
    (bundle / "model.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(
        app, ["abundance", str(results), "--out", str(tmp_path / "o"), "--bundle", str(bundle)]
    )
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()).startswith(
        f"error: {bundle}: its validation confusion matrix lacks class(es) ['bright']"
    )


def _depth_label(result) -> str:
    figure = result.figure
    assert figure.is_file()
    return result.analysis.axis_label


def test_the_depth_axis_states_the_unit_given(results, tmp_path):
    from foramflow.abundance.steps import estimate_abundance

    result = estimate_abundance(results, tmp_path / "out", bootstrap=5, depth_unit="cm")
    assert _depth_label(result) == "depth (cm)"
    assert not any("depth unit" in note for note in result.analysis.notes)


def test_the_depth_unit_comes_from_the_human_counts_column_name(results, tmp_path):
    from foramflow.abundance.steps import estimate_abundance

    human = tmp_path / "human.csv"
    human.write_text("sample,depth_m,dark,mid,bright\ns0,1.0,8,6,6\ns1,2.0,7,7,6\n")
    result = estimate_abundance(results, tmp_path / "out", bootstrap=5, human=human)
    assert _depth_label(result) == "depth (m)"


def test_an_unknown_depth_unit_is_said_on_the_axis_and_in_a_note(results, tmp_path):
    from foramflow.abundance.steps import estimate_abundance

    result = estimate_abundance(results, tmp_path / "out", bootstrap=5)
    assert _depth_label(result) == "depth (unit not stated)"
    assert any("depth unit is not known" in note for note in result.analysis.notes)


def test_the_figure_draws_the_axis_label(results, tmp_path):
    from foramflow.abundance.plots import plot_downcore
    from foramflow.abundance.steps import estimate_abundance

    result = estimate_abundance(results, tmp_path / "out", bootstrap=5, depth_unit="m")
    figure = plot_downcore(result.analysis)
    labels = {ax.get_xlabel() for ax in figure.axes if ax.get_visible()}
    assert labels - {""} == {"depth (m)"}


def test_em_says_when_the_bundle_keeps_no_validation_probabilities(results, tmp_path):
    from foramflow.abundance.steps import estimate_abundance

    progress = Recorded()
    estimate_abundance(results, tmp_path / "out", bootstrap=5, progress=progress)
    assert any("keeps no validation probabilities" in m for m in progress.messages)


def test_em_uses_the_validation_probabilities_the_bundle_keeps(results, tmp_path):
    from foramflow.abundance.correction import corrected_em
    from foramflow.abundance.steps import estimate_abundance
    from foramflow.bundle import Bundle
    from foramflow.bundle.validation import ValidationSet, write_validation

    bundle = Bundle.load(tmp_path / "bundle")
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(3), 50)
    probs = 0.7 * np.eye(3)[true] + 0.3 * rng.dirichlet(np.ones(3), size=len(true))
    write_validation(bundle.path, ValidationSet(true, probs), bundle.read_model())
    progress = Recorded()
    result = estimate_abundance(results, tmp_path / "out", bootstrap=5, progress=progress)
    assert not any("validation" in m for m in progress.messages)
    predictions = pd.read_parquet(results / "predictions.parquet")
    sample = predictions[predictions["sample"] == "s0"]
    expected = corrected_em(sample[[f"prob_{c}" for c in bundle.labels]].to_numpy(), probs, true)
    em = result.analysis.abundance.query("method == 'em' and sample == 's0'")
    np.testing.assert_allclose(em.set_index("taxon")["fraction"][bundle.labels], expected)
