"""Abundance inputs that would be miscounted, ignored or misreported are refused or named."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from abundance.conftest import rows
from foramflow.abundance.analysis import analyse_core
from foramflow.abundance.compare import read_human_counts
from foramflow.abundance.groups import Ratio
from foramflow.cli import app
from foramflow.errors import ForamflowError

runner = CliRunner()


def abundance(results, *args):
    out = results.parent / "out"
    return runner.invoke(
        app, ["abundance", str(results), "--out", str(out), "--bootstrap", "20", *map(str, args)]
    )


def error_line(result) -> str:
    """The command's only output line, which must be an error, with exit code 2."""
    lines = result.output.splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def write(path, text):
    path.write_text(text)
    return path


def test_duplicate_sample_rows_in_human_counts_are_refused(results, tmp_path):
    human = write(
        tmp_path / "human.csv",
        "sample,dark,mid,bright\ns0,8,6,6\ns1,8,6,6\n\ns0,8,6,6\n",
    )
    line = error_line(abundance(results, "--human", human))
    assert f"{human}: sample 's0' is on lines 2 and 5" in line


def test_ratio_naming_an_unknown_class_is_refused(results):
    line = error_line(abundance(results, "--ratio", "x=nosuch/dark+mid"))
    assert "ratio 'x'" in line and "'nosuch'" in line and "no class or group" in line


def test_ratio_naming_an_unknown_class_is_refused_by_the_library(make_predictions):
    with pytest.raises(ForamflowError, match="'nosuch'"):
        analyse_core(make_predictions(rows()), ratio_definitions=[Ratio.parse("x=nosuch/dark")])


def test_ratio_of_unsure_is_accepted_when_no_image_is_unsure(results):
    result = abundance(results, "--ratio", "u=unsure/dark+mid+bright+unsure")
    assert result.exit_code == 0, result.output
    ratios = pd.read_csv(results.parent / "out" / "ratios.csv")
    assert ratios.loc[ratios["method"] == "raw", "value"].tolist() == [0.0, 0.0]


def test_all_zero_row_in_human_counts_is_refused(results, tmp_path):
    human = write(tmp_path / "human.csv", "sample,dark,mid,bright\ns0,8,6,6\ns1,0,0,0\n")
    line = error_line(abundance(results, "--human", human))
    assert f"{human}: line 3 (sample 's1'): every count is zero" in line


def test_unknown_taxon_columns_of_human_counts_are_named_and_left_out(results, tmp_path):
    human = write(tmp_path / "human.csv", "sample,dark,mid,bright,Other\ns0,8,6,6,20\ns1,4,8,8,0\n")
    result = abundance(results, "--human", human)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "warning: human counts: column 'Other' names no class or group" in output
    assert "No sample name is shared" not in output
    out = results.parent / "out"
    table = pd.read_csv(out / "human_abundance.csv").set_index(["sample", "taxon"])
    assert set(table.index.get_level_values("taxon")) == {"dark", "mid", "bright"}
    assert table.loc[("s0", "dark"), "fraction"] == pytest.approx(0.4)  # 8 / 20, not 8 / 40
    by_sample = pd.read_csv(out / "agreement_by_sample.csv")
    raw = by_sample[by_sample["method"] == "raw"].set_index("sample")
    assert raw.loc["s0", "bray_curtis"] == pytest.approx(0.0)
    assert raw.loc["s1", "bray_curtis"] == pytest.approx(0.2)
    assert "column &#x27;Other&#x27; names no class or group" in (out / "report.html").read_text()


def test_human_counts_without_a_known_taxon_say_so(results, tmp_path):
    human = write(tmp_path / "human.csv", "sample,Dark,Mid\ns0,8,12\ns1,8,12\n")
    result = abundance(results, "--human", human)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "warning: human counts: columns 'Dark', 'Mid' name no class or group" in output
    assert "note: The human counts share no taxon with the predictions: no agreement." in output
    assert "No sample name is shared" not in output


@pytest.mark.parametrize("option", ["--human", "--age-model"])
def test_empty_csv_is_refused_naming_it(results, tmp_path, option):
    path = write(tmp_path / "table.csv", "")
    line = error_line(abundance(results, option, path))
    assert f"{path}: empty file" in line


def test_human_counts_with_a_header_and_no_rows_are_refused(tmp_path):
    path = write(tmp_path / "human.csv", "sample,dark,mid\n")
    with pytest.raises(ForamflowError, match="a header but no rows"):
        read_human_counts(path)


@pytest.mark.parametrize("option", ["--human", "--age-model"])
def test_binary_csv_is_refused_naming_it(results, tmp_path, option):
    path = tmp_path / "table.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    line = error_line(abundance(results, option, path))
    assert f"{path}: a binary file, not a CSV table" in line


def test_human_counts_not_in_utf8_are_refused_naming_them(tmp_path):
    path = tmp_path / "human.csv"
    path.write_bytes("sample,Globigerina bulloïdes\ns0,3\n".encode("latin-1"))
    with pytest.raises(ForamflowError, match="not UTF-8 text"):
        read_human_counts(path)


def test_zero_bootstrap_replicates_are_refused(results, make_predictions):
    line = error_line(abundance(results, "--bootstrap", "0"))
    assert "'--bootstrap'" in line and "greater than or equal to 1" in line
    assert "predictions.parquet" not in line
    with pytest.raises(ForamflowError, match="at least one bootstrap replicate"):
        analyse_core(make_predictions(rows()), n_boot=0)


def test_valid_inputs_still_give_the_known_answer(results, tmp_path):
    human = write(tmp_path / "human.csv", "sample,depth,dark,mid,bright\ns0,1,8,6,6\ns1,2,4,8,8\n")
    result = abundance(results, "--human", human)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    table = pd.read_csv(results.parent / "out" / "human_abundance.csv")
    assert np.allclose(table["fraction"], [0.4, 0.3, 0.3, 0.2, 0.4, 0.4])


def test_an_unreadable_predictions_table_is_named(results):
    (results / "predictions.parquet").write_bytes(b"not parquet at all")
    line = error_line(abundance(results))
    assert f"{results / 'predictions.parquet'}: not a readable predictions table" in line


@pytest.mark.parametrize("value", ["1e308", "inf", "2e9"])
def test_a_count_too_large_to_be_true_is_refused(results, tmp_path, value):
    human = write(tmp_path / "human.csv", f"sample,dark,mid,bright\ns0,8,6,6\ns1,{value},6,6\n")
    line = error_line(abundance(results, "--human", human))
    assert f"{human}: counts over 1e+09 or infinite in column(s) dark" in line


def test_a_corrupt_run_json_is_named(results):
    (results / "run.json").write_text('{"bundle":\n')
    line = error_line(abundance(results))
    assert line.startswith(f"error: {results / 'run.json'}: invalid run.json (Expecting value")


@pytest.mark.parametrize("bad", ["nan", "inf", "one class"])
def test_a_validation_set_that_would_blank_em_is_set_aside_with_a_warning(results, bad):
    """One NaN cell once blanked EM for every sample: now the file is named and set aside,
    and every estimate stays a number."""
    from foramflow.bundle import Bundle
    from foramflow.bundle.validation import ValidationSet, write_validation

    bundle = Bundle.load(results.parent / "bundle")
    probs = np.tile([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], (10, 1))
    labels = np.tile([0, 1, 2], 10)
    if bad == "one class":
        labels[:] = 1
    else:
        probs[4, 1] = float(bad)
    write_validation(bundle.path, ValidationSet(labels, probs), bundle.read_model())
    result = abundance(results)
    assert result.exit_code == 0, result.output
    assert "validation.npz:" in result.output and "EM is left without" in result.output
    table = pd.read_csv(results.parent / "out" / "abundance.csv")
    assert table.loc[table["method"] == "em", "fraction"].notna().all()
