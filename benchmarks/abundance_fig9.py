"""A Fig. 9-like down-core figure from a simulated core with a known abundance signal.

Simulates what ``foramflow classify`` would write for a core of planktonic samples whose
true assemblage is known, then runs the abundance analysis and measures how far the raw
counts, the ACC- and EM-corrected estimates and a 350-specimen human count lie from the truth.

The simulated classifier (:mod:`foramflow.abundance.simulate`) mimics the paper's planktonic
model (Marchant et al. 2020, §3.3): *N. incompta* is a look-alike of *N. dutertrei* and is
absent from the upper half of the core (the analogue of the paper's *B. spissa*, where false
positives gave 5 % against a human zero), "fragment" sits among all classes so every class
is confused with it. The network was trained with class weights, so its outputs are
posteriors under a uniform prior, tilted towards rare classes (the mechanism behind false
positives of rare look-alikes), and it is over-confident (logits × 2). As ``foramflow
calibrate`` does, a temperature and per-class offsets are fitted on a simulated validation
set; classify applies the temperature, the EM correction the offsets too, and corrects its
bias with the validation probabilities (as a bundle keeps them in validation.npz). One sample is
imaged "on another set-up" (feature contrast × 0.6) and should be flagged for drift.

Usage: python benchmarks/abundance_fig9.py [--samples 20] [--images 3000] [--bootstrap 500]
       [--save NAME]
Writes benchmarks/results/abundance_fig9/ (figure, report, tables); ``--save NAME`` also
writes the error table to benchmarks/results/NAME.json for the documentation's results page.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import softmax

from foramflow.abundance.analysis import METHOD_NAMES, Confusion, analyse_core, write_tables
from foramflow.abundance.groups import Grouping, Ratio
from foramflow.abundance.plots import plot_downcore, save_figure
from foramflow.abundance.report import write_report
from foramflow.abundance.simulate import SimulatedClassifier, draw_sample
from foramflow.bundle.decisions import DecisionRule
from foramflow.bundle.engine import apply_temperature
from foramflow.bundle.validation import top_probability_reference
from foramflow.evaluate.calibration import (
    fit_class_bias,
    fit_temperature,
    negative_log_likelihood,
)
from saved_results import save_result

CLASSES = [
    "G. ruber",
    "G. glutina",
    "N. dutertrei",
    "N. incompta",
    "P. obliquiloculata",
    "G. bulloides",
    "G. menardii",
    "other planktonic",
    "fragment",
]
ABSENT_ABOVE_CM = 475.0  # N. incompta is absent above this depth
OVERCONFIDENCE = 2.0
SEPARATION = 5.0
DRIFTED_SAMPLE = 15
DRIFT_CONTRAST = 0.6
OUT = Path(__file__).resolve().parent / "results" / "abundance_fig9"


def true_proportions(depth_cm: np.ndarray) -> np.ndarray:
    """Smooth, known class proportions (samples × classes) down the core."""
    x = depth_cm / depth_cm.max()
    log_abundance = np.stack(
        [
            1.6 + 0.6 * np.cos(2 * np.pi * x),  # G. ruber: a dip mid-core
            0.9 + 0.3 * x,  # G. glutina
            0.8 + 1.1 * np.exp(-(((x - 0.25) / 0.08) ** 2)),  # N. dutertrei: one peak
            np.where(depth_cm > ABSENT_ABOVE_CM, 0.2 + 0.8 * x, -np.inf),  # N. incompta
            0.6 + 0.7 * np.sin(3 * np.pi * x) ** 2,  # P. obliquiloculata: three peaks
            0.7 - 0.5 * x,  # G. bulloides
            -0.2 + 0.5 * x,  # G. menardii
            0.9 + 0.2 * np.sin(2 * np.pi * x),  # other planktonic
            0.9 + 1.0 * x**2,  # fragment: dissolution increases down-core
        ],
        axis=1,
    )
    return softmax(log_abundance, axis=1)


def make_classifier(rng) -> SimulatedClassifier:
    """The network: Bayes posterior under a uniform prior (class-weighted training)."""
    base = SimulatedClassifier.make(len(CLASSES), separation=SEPARATION, rng=rng)
    means = base.means.copy()
    dutertrei, incompta, fragment = (
        CLASSES.index(c) for c in ("N. dutertrei", "N. incompta", "fragment")
    )
    direction = rng.normal(size=means.shape[1])
    means[incompta] = means[dutertrei] + 1.2 * direction / np.linalg.norm(direction)
    centre = means[np.arange(len(CLASSES)) != fragment].mean(axis=0)
    means[fragment] = 0.5 * (centre + means[fragment])  # close to every class
    return SimulatedClassifier(means=means, prior=base.prior)


def overconfident(probs: np.ndarray) -> np.ndarray:
    return apply_temperature(probs, 1.0 / OVERCONFIDENCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--images", type=int, default=3000, help="mean images per sample")
    parser.add_argument("--human", type=int, default=350, help="specimens per human count")
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--save", metavar="NAME", help="also write benchmarks/results/NAME.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    OUT.mkdir(parents=True, exist_ok=True)

    depth = np.linspace(5.0, 945.0, args.samples)
    truth = true_proportions(depth)
    classifier = make_classifier(rng)

    # Validation split: a random 20 % of a 10 000-image training set drawn from the core.
    val_truth = draw_sample(truth.mean(axis=0), 2000, rng=rng)
    val_probs = overconfident(classifier.classify(val_truth, rng=rng))
    temperature = fit_temperature(val_probs, val_truth)
    val_calibrated = apply_temperature(val_probs, temperature)
    class_bias = fit_class_bias(val_calibrated, val_truth)
    k = len(CLASSES)
    confusion = np.bincount(val_truth * k + val_calibrated.argmax(axis=1), minlength=k * k)
    confusion = Confusion(
        labels=CLASSES,
        matrix=confusion.reshape(k, k),
        probabilities=val_calibrated,  # what a bundle keeps (validation.npz), as classify sees it
        true=val_truth,
    )
    accuracy = np.trace(confusion.matrix) / confusion.matrix.sum()

    rows, human_rows = [], []
    rule = DecisionRule(tuple(CLASSES), 0.8)
    for i, (d, p) in enumerate(zip(depth, truth, strict=True)):
        sample = f"S{i:02d}_{d:.0f}cm"
        n = int(rng.integers(args.images // 2, 3 * args.images // 2))
        true_classes = draw_sample(p, n, rng=rng)
        contrast = DRIFT_CONTRAST if i == DRIFTED_SAMPLE else 1.0
        probs = apply_temperature(
            overconfident(classifier.classify(true_classes, rng=rng, contrast=contrast)),
            temperature,
        )
        classes, scores, status = rule.decide(probs)
        table = pd.DataFrame(
            {
                "path": [f"{sample}/{j:05d}.png" for j in range(n)],
                "sample": sample,
                "depth": d,
                "class": classes,
                "score": scores.astype(float),
            }
        )
        for j, label in enumerate(CLASSES):
            table[f"prob_{label}"] = probs[:, j]
        table["status"], table["error"] = status, ""
        rows.append(table)
        human_rows.append(
            {
                "sample": sample,
                "depth": d,
                **dict(zip(CLASSES, rng.multinomial(args.human, p), strict=True)),
            }
        )
    predictions = pd.concat(rows, ignore_index=True)
    human_counts = pd.DataFrame(human_rows).set_index("sample")
    human = (human_counts.drop(columns="depth"), human_counts[["depth"]])

    grouping = Grouping(exclude=("unsure", "fragment"))
    ratios = [Ratio.parse("fragments / all=fragment/" + "+".join(CLASSES))]
    started = time.perf_counter()
    result = analyse_core(
        predictions,
        grouping=grouping,
        ratio_definitions=ratios,
        confusion=confusion,
        human=human,
        n_boot=args.bootstrap,
        seed=args.seed,
        class_bias=dict(zip(CLASSES, class_bias, strict=True)),
        drift_reference=top_probability_reference(val_calibrated.max(axis=1)),
    )
    seconds = time.perf_counter() - started

    # The truth in the same long format, grouped the same way.
    groups, matrix = grouping.matrix(CLASSES)
    grouped = truth @ matrix
    grouped /= grouped.sum(axis=1, keepdims=True)
    samples = list(result.positions.index)
    sample_of_depth = dict(zip(human_counts["depth"], human_counts.index, strict=True))
    truth_long = pd.DataFrame(
        {
            "sample": np.repeat([sample_of_depth[d] for d in depth], len(groups)),
            "taxon": np.tile(groups, len(depth)),
            "fraction": grouped.ravel(),
        }
    )

    figure = OUT / "downcore.png"
    save_figure(
        plot_downcore(
            result,
            truth=truth_long,
            title="Simulated core: known truth, human and automatic counts",
        ),
        figure,
    )
    write_tables(result, OUT)
    predictions.to_parquet(OUT / "predictions.parquet")
    human_counts.to_csv(OUT / "human_counts.csv")
    write_report(
        OUT / "report.html",
        result,
        title="Simulated core (known truth)",
        figures={"Down-core relative abundance (dashed: truth)": figure},
        level=0.95,
    )

    # Errors against the truth (percentage points), per method, over all samples and taxa.
    drifted = samples[DRIFTED_SAMPLE] if len(samples) > DRIFTED_SAMPLE else None
    tables = dict(iter(result.abundance.groupby("method", sort=False)))
    tables["human"] = result.human
    incompta_upper = [
        s for s, d in zip(samples, result.positions["depth"], strict=True) if d < ABSENT_ABOVE_CM
    ]
    summary = []
    for method, table in tables.items():
        merged = table.merge(truth_long, on=["sample", "taxon"], suffixes=("", "_true"))
        clean = merged[merged["sample"] != drifted]
        error = 100 * (clean["fraction"] - clean["fraction_true"]).abs()
        covered = (clean["low"] <= clean["fraction_true"] + 1e-6) & (
            clean["fraction_true"] <= clean["high"] + 1e-6
        )
        absent = clean[(clean["taxon"] == "N. incompta") & clean["sample"].isin(incompta_upper)]
        summary.append(
            {
                "estimate": "human count" if method == "human" else METHOD_NAMES[method],
                "mean_abs_error_pp": error.mean(),
                "max_abs_error_pp": error.max(),
                "coverage_95": covered.mean(),
                "mean_interval_width_pp": 100 * (clean["high"] - clean["low"]).mean(),
                "N_incompta_where_absent_pp": 100 * absent["fraction"].mean(),
            }
        )
    summary = pd.DataFrame(summary)
    summary.to_csv(OUT / "errors_vs_truth.csv", index=False)

    n_images = (predictions["status"] != "error").sum()
    print(
        f"core: {args.samples} samples, {n_images} images "
        f"({n_images / args.samples:.0f} per sample), human counts of {args.human}"
    )
    print(
        f"validation: {confusion.matrix.sum()} images, top-1 accuracy {accuracy:.3f}; "
        f"temperature {temperature:.3f} (simulated over-confidence {OVERCONFIDENCE}); "
        f"NLL {negative_log_likelihood(val_probs, val_truth):.4f} → "
        f"{negative_log_likelihood(val_probs, val_truth, temperature):.4f}"
    )
    print(f"analysis: {seconds:.1f} s with {args.bootstrap} bootstrap replicates")
    print(
        f"errors against the truth, drifted sample {drifted} left out "
        "(percentage points; coverage of the 95 % intervals):"
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    flagged = result.drift.index[result.drift["flagged"]].tolist()
    print(
        f"drift flags: {flagged} (simulated drift: {drifted}); KS distance of the others: "
        f"max {result.drift.loc[~result.drift['flagged'], 'ks_distance'].max():.3f}"
    )
    print(f"figure: {figure}")
    print(f"report: {OUT / 'report.html'}")
    if args.save:
        path = save_result(
            args.save,
            title=f"Abundances on a simulated core ({args.samples} samples, about "
            f"{n_images / args.samples:.0f} images each, human counts of {args.human})",
            columns=list(summary.columns),
            rows=[
                [round(v, 3) if isinstance(v, float) else v for v in row]
                for row in summary.itertuples(index=False)
            ],
            notes=f"Percentage points against the known truth; the drifted sample {drifted} "
            "left out; coverage of the 95 % intervals.",
        )
        print(f"saved: {path}")


if __name__ == "__main__":
    main()
