"""`foramflow calibrate` on a real (tiny) ONNX bundle, and `foramflow abundance` end to end."""

import base64
import json
import re

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from foramflow.bundle import Bundle
from foramflow.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_calibrate_lowers_nll_and_stores_everything(tiny_bundle, labelled_images, tmp_path):
    result = runner.invoke(
        app,
        [
            "calibrate",
            str(tiny_bundle),
            str(labelled_images),
            "--target-precision",
            "0.9",
            "--per-class",
        ],
    )
    assert result.exit_code == 0, result.output
    calibration = Bundle.load(tiny_bundle).meta.calibration
    # The model is deliberately over-confident: the fitted temperature is well above 1 and
    # the validation NLL falls.
    assert calibration.temperature > 2.0
    assert calibration.nll_after < 0.7 * calibration.nll_before
    assert calibration.ece_after < calibration.ece_before
    assert len(calibration.top_probability_quantiles) == 101
    meta = Bundle.load(tiny_bundle).meta
    assert set(meta.class_thresholds) == {"dark", "mid", "bright"}
    assert 0.5 < meta.threshold <= 1.0
    curve = pd.read_csv(tiny_bundle / "calibration" / "coverage_accuracy.csv")
    assert curve["coverage"].iloc[-1] == 1.0
    assert (tiny_bundle / "calibration" / "coverage_accuracy.png").stat().st_size > 1000

    # Refitting ignores the stored temperature: the same answer again.
    again = runner.invoke(
        app,
        [
            "calibrate",
            str(tiny_bundle),
            str(labelled_images),
            "--target-precision",
            "0.9",
            "--per-class",
        ],
    )
    assert again.exit_code == 0, again.output
    refit = Bundle.load(tiny_bundle).meta.calibration.temperature
    assert refit == calibration.temperature


def test_calibrate_rejects_a_folder_without_label_folders(tiny_bundle, tmp_path):
    (tmp_path / "empty" / "unknown").mkdir(parents=True)
    result = runner.invoke(app, ["calibrate", str(tiny_bundle), str(tmp_path / "empty")])
    assert result.exit_code != 0
    assert "no images in folders named as the labels" in flat(result.output)


def simulated_results(tmp_path, make_predictions, make_bundle):
    """A classify results folder: 4 samples, the classifier mistakes some 'mid' for 'dark'."""
    confusion = [[45, 5, 0], [15, 35, 0], [0, 0, 50]]  # rows true dark, mid, bright
    bundle = make_bundle(tmp_path / "bundle", confusion=confusion)
    rng = np.random.default_rng(0)
    rates = np.array(confusion) / 50
    rows, human = [], []
    for i, mid_share in enumerate([0.1, 0.3, 0.5, 0.7]):
        truth = np.array([0.6 - mid_share / 2, mid_share, 0.4 - mid_share / 2])
        for true_class in rng.choice(3, size=300, p=truth):
            predicted = rng.choice(3, p=rates[true_class])
            probs = np.full(3, 0.05)
            probs[predicted] = 0.9
            rows.append((f"s{i}", 10.0 * (i + 1), ["dark", "mid", "bright"][predicted], probs))
        human.append(
            {
                "sample": f"s{i}",
                **dict(zip(["dark", "mid", "bright"], rng.multinomial(300, truth), strict=True)),
            }
        )
    rows.append(("s0", 10.0, "", None))  # an unreadable image
    results = tmp_path / "results"
    results.mkdir()
    make_predictions(rows).to_parquet(results / "predictions.parquet")
    (results / "run.json").write_text(json.dumps({"bundle": str(bundle), "threshold": 0.8}))
    pd.DataFrame(human).to_csv(tmp_path / "human.csv", index=False)
    pd.DataFrame({"depth": [0, 100], "age_ka": [0, 50]}).to_csv(tmp_path / "age.csv", index=False)
    (tmp_path / "groups.yaml").write_text("groups:\n  light: [mid, bright]\nexclude: [unsure]\n")
    return results


def test_abundance_end_to_end(tmp_path, make_predictions, make_bundle):
    results = simulated_results(tmp_path, make_predictions, make_bundle)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "abundance",
            str(results),
            "--out",
            str(out),
            "--human",
            str(tmp_path / "human.csv"),
            "--age-model",
            str(tmp_path / "age.csv"),
            "--ratio",
            "mid share=mid/dark+mid+bright",
            "--bootstrap",
            "100",
        ],
    )
    assert result.exit_code == 0, result.output
    abundance = pd.read_csv(out / "abundance.csv")
    assert set(abundance["method"]) == {"raw", "acc", "em"}
    assert abundance["age_ka"].tolist()[:3] == [5.0, 5.0, 5.0]  # 10 cm → 5 ka
    agreement = pd.read_csv(out / "agreement_by_taxon.csv").set_index(["method", "taxon"])
    # 'mid' is under-counted by the classifier; the correction brings it nearer the humans.
    assert (
        agreement.loc[("acc", "mid"), "mean_abs_difference_pp"]
        < agreement.loc[("raw", "mid"), "mean_abs_difference_pp"]
    )
    assert (out / "agreement_by_sample.csv").is_file()
    ratios = pd.read_csv(out / "ratios.csv")
    assert set(ratios["method"]) == {"raw", "acc", "em"}
    report = (out / "report.html").read_text()
    uri = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", report)
    assert uri and base64.b64decode(uri.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Agreement with the human counts" in report and "1 unreadable" in report


def test_abundance_groups_without_bundle(tmp_path, make_predictions, make_bundle):
    results = simulated_results(tmp_path, make_predictions, make_bundle)
    (results / "run.json").write_text(json.dumps({"bundle": str(tmp_path / "gone")}))
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["abundance", str(results), "--out", str(out), "--groups", str(tmp_path / "groups.yaml")],
    )
    assert result.exit_code == 0, result.output
    assert "not be corrected" in flat(result.output)
    abundance = pd.read_csv(out / "abundance.csv")
    assert set(abundance["method"]) == {"raw"}
    assert set(abundance["taxon"]) == {"dark", "light"}
    s0 = abundance[abundance["sample"] == "s0"].set_index("taxon")
    assert s0.loc["dark", "count"] + s0.loc["light", "count"] == s0.loc["dark", "total"] == 300


def test_abundance_reports_a_missing_predictions_table(tmp_path):
    result = runner.invoke(app, ["abundance", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "not found (run `foramflow classify` first)" in flat(result.output)


def test_calibrate_refuses_to_fit_a_temperature_on_images_all_classified_right(
    tiny_bundle, tmp_path
):
    """Images each exactly at its class's brightness: all right and certain, so the NLL
    falls without end as the temperature falls; no temperature is stored."""
    from PIL import Image

    for name, level in {"dark": 0.25, "mid": 0.5, "bright": 0.75}.items():
        (tmp_path / "exact" / name).mkdir(parents=True)
        for i in range(5):
            pixels = np.full((8, 8), round(level * 255), np.uint8)
            Image.fromarray(pixels).save(tmp_path / "exact" / name / f"{i}.png")
    result = runner.invoke(app, ["calibrate", str(tiny_bundle), str(tmp_path / "exact")])
    assert result.exit_code != 0
    output = flat(result.output)
    error = output[output.index("error:") :]  # after the progress bar of the predictions
    assert "all 15 validation images are classified right" in error
    assert str(tiny_bundle) in output
    assert Bundle.load(tiny_bundle).meta.calibration is None
