"""The whole abundance analysis of a core: from a predictions table to result tables.

One function, :func:`analyse_core`, reads like the method: count per sample, group, compute
relative abundances with intervals, correct them for the classifier's confusions (ACC and EM,
see :mod:`foramflow.abundance.correction`), evaluate ratios, compare with human counts, and
flag samples that look unlike the training set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from foramflow.abundance import correction
from foramflow.abundance.compare import agreement_by_sample, agreement_by_taxon, split_known_taxa
from foramflow.abundance.counts import (
    class_counts,
    depth_to_age,
    ratios,
    relative_abundance,
    sample_positions,
)
from foramflow.abundance.drift import DEFAULT_MAX_DISTANCE, drift_table
from foramflow.abundance.groups import UNSURE, Grouping, Ratio, check_ratio_terms
from foramflow.abundance.inputs import AbundanceError
from foramflow.bundle.schema import BundleMeta
from foramflow.evaluate.calibration import apply_class_bias
from foramflow.io.tables import (
    DEPTH,
    DEPTH_UNITS,
    TableError,
    check_unit,
    depth_column,
    depth_unit,
    find_depth_column,
    is_depth_column,
    write_csv,
)

PROB_PREFIX = "prob_"
SAMPLE_ORDER = "sample_order"  # the axis when no sample has a known depth
METHOD_NAMES = {"raw": "classify and count", "acc": "adjusted count (ACC)", "em": "EM prior"}
NO_SHARED_TAXON = "The human counts share no taxon with the predictions: no agreement."


@dataclass
class Confusion:
    """A validation confusion matrix (rows true, columns predicted) and its class labels,
    with the validation images' probabilities (as classify gives them) where known."""

    labels: list[str]
    matrix: np.ndarray
    probabilities: np.ndarray | None = None  # (N, K), columns in ``labels`` order
    true: np.ndarray | None = None  # (N,) indices into ``labels``

    @classmethod
    def from_meta(cls, meta: BundleMeta | None) -> Confusion | None:
        """From a bundle's validation confusion matrix, or None when it has none."""
        entry = meta.validation_confusion if meta is not None else None
        if not entry:
            return None
        return cls(labels=list(entry.labels), matrix=np.asarray(entry.matrix, int))

    def reorder(self, labels: Sequence[str]) -> np.ndarray:
        """The matrix with rows and columns in ``labels`` order."""
        missing = [label for label in labels if label not in self.labels]
        if missing:
            raise AbundanceError(f"validation confusion matrix lacks class(es) {missing}")
        index = [self.labels.index(label) for label in labels]
        return self.matrix[np.ix_(index, index)]

    def validation_in(self, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """The validation probabilities and true classes with classes in ``labels`` order."""
        if self.probabilities is None:
            return None
        index = [self.labels.index(label) for label in labels]
        position = np.full(len(self.labels), -1)
        position[index] = np.arange(len(index))
        return self.probabilities[:, index], position[self.true]


@dataclass
class CoreAbundance:
    """Every table of a core's abundance analysis (long tables: one row per sample × taxon)."""

    positions: pd.DataFrame  # index sample; depth [, age]
    axis: str  # the positions column used as the down-core axis
    axis_label: str  # the axis as figures name it, with its unit
    class_counts: pd.DataFrame
    abundance: pd.DataFrame  # method, sample, taxon, fraction, low, high (+ counts for raw)
    ratios: pd.DataFrame  # method, sample, ratio, value, low, high
    drift: pd.DataFrame
    human: pd.DataFrame | None = None  # sample, taxon, count, total, fraction, low, high
    human_positions: pd.DataFrame | None = None
    agreement_taxon: pd.DataFrame | None = None  # method, taxon, …
    agreement_sample: pd.DataFrame | None = None  # method, sample, …
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # inputs left out, named
    depth_unit: str | None = None  # of ``positions["depth"]``; None: not stated


def probability_labels(predictions: pd.DataFrame) -> list[str]:
    """Class labels from the ``prob_<label>`` columns, in table order."""
    return [c[len(PROB_PREFIX) :] for c in predictions.columns if c.startswith(PROB_PREFIX)]


def class_names(predictions: pd.DataFrame) -> set[str]:
    """Every class an image of these predictions could have: the model's and ``unsure``."""
    classified = predictions.loc[predictions["status"] != "error", "class"]
    return {*probability_labels(predictions), *classified, UNSURE}


def check_settings(
    predictions: pd.DataFrame,
    *,
    grouping: Grouping,
    ratio_definitions: Sequence[Ratio] = (),
    n_boot: int = 1000,
) -> None:
    """Refuse settings that would give silent nonsense rather than an answer.

    A ratio term that names no class would count as zero; the corrected estimates' intervals
    need at least one bootstrap replicate.
    """
    check_ratio_terms(ratio_definitions, grouping, class_names(predictions))
    if n_boot < 1:
        raise AbundanceError(f"the intervals need at least one bootstrap replicate, not {n_boot}")


def _group_fractions(proportions: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    grouped = proportions @ matrix
    with np.errstate(invalid="ignore", divide="ignore"):
        return grouped / grouped.sum(axis=-1, keepdims=True)


def _ratio_values(proportions: np.ndarray, labels, grouping, definitions) -> np.ndarray:
    """(…, R) ratio values from class proportions (…, K)."""
    out = []
    for ratio in definitions:
        num, den = ratio.class_sets(grouping)
        a = proportions[..., [i for i, c in enumerate(labels) if c in num]].sum(axis=-1)
        b = proportions[..., [i for i, c in enumerate(labels) if c in den]].sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(a / b)
    return np.stack(out, axis=-1) if out else np.zeros((*proportions.shape[:-1], 0))


def corrected_estimates(
    predictions: pd.DataFrame,
    *,
    labels: Sequence[str],
    confusion: np.ndarray,
    grouping: Grouping,
    ratio_definitions: Sequence[Ratio] = (),
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    class_bias=None,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    on_sample: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ACC and EM estimates per sample, grouped, with bootstrap percentile intervals.

    Every image that was classified counts, whatever the threshold: ACC with its top class
    (the validation confusion matrix describes top-class predictions), EM with its
    probabilities. The correction, not a threshold, deals with the doubtful images, so a
    taxon that is more often unsure is not under-counted. ``validation`` (probabilities,
    true classes) lets EM correct its own bias (:mod:`foramflow.abundance.correction`).
    ``class_bias`` (K,), from ``foramflow calibrate``, is applied to the probabilities
    before EM (:func:`foramflow.evaluate.calibration.fit_class_bias`).
    """
    rng = np.random.default_rng(seed)
    labels = list(labels)
    groups, matrix = grouping.matrix(labels)
    prob_columns = [PROB_PREFIX + label for label in labels]
    ok = predictions[predictions["status"] != "error"]
    if validation is not None and class_bias is not None:
        validation = (apply_class_bias(validation[0], class_bias), validation[1])
    abundance_rows, ratio_rows = [], []
    for sample, group in ok.groupby("sample", sort=False):
        probs = group[prob_columns].to_numpy(float)
        predicted = np.bincount(probs.argmax(axis=1), minlength=len(labels))
        if class_bias is not None:
            probs = apply_class_bias(probs, class_bias)
        estimates = _sample_estimates(
            predicted, probs, confusion, validation, n_boot=n_boot, rng=rng
        )
        for method, (estimate, replicates) in estimates.items():
            fraction = _group_fractions(estimate, matrix)
            low, high = correction.percentile_interval(
                _group_fractions(replicates, matrix), level=level
            )
            abundance_rows.append(
                pd.DataFrame(
                    {
                        "method": method,
                        "sample": sample,
                        "taxon": groups,
                        "fraction": fraction,
                        "low": low,
                        "high": high,
                    }
                )
            )
            if ratio_definitions:
                ratio_rows.append(
                    _corrected_ratios(
                        method,
                        sample,
                        estimate,
                        replicates,
                        labels,
                        grouping,
                        ratio_definitions,
                        level,
                    )
                )
        if on_sample:
            on_sample(sample)
    ratio_table = pd.concat(ratio_rows, ignore_index=True) if ratio_rows else pd.DataFrame()
    return pd.concat(abundance_rows, ignore_index=True), ratio_table


def _sample_estimates(predicted, probs, confusion, validation, *, n_boot: int, rng) -> dict:
    """``{method: (class proportions (K,), bootstrap replicates (B, K))}`` for one sample.

    The replicates draw from ``rng`` in a fixed order (ACC, then EM): a seed gives one answer.
    """
    acc = correction.adjusted_classify_and_count(predicted, correction.confusion_rates(confusion))
    acc_replicates = correction.acc_bootstrap(predicted, confusion, n_boot=n_boot, rng=rng)
    if validation is None:
        train_prior = confusion.sum(axis=1)
        em = correction.em_prior_adjustment(probs, train_prior)
        em_replicates = correction.em_bootstrap(probs, train_prior, n_boot=n_boot, rng=rng)
    else:
        em = correction.corrected_em(probs, *validation)
        em_replicates = correction.corrected_em_bootstrap(
            probs, *validation, n_boot=n_boot, rng=rng
        )
    return {"acc": (acc, acc_replicates), "em": (em, em_replicates)}


def _corrected_ratios(
    method, sample, estimate, replicates, labels, grouping, definitions, level
) -> pd.DataFrame:
    value = _ratio_values(estimate, labels, grouping, definitions)
    low, high = correction.percentile_interval(
        _ratio_values(replicates, labels, grouping, definitions), level=level
    )
    return pd.DataFrame(
        {
            "method": method,
            "sample": sample,
            "ratio": [r.name for r in definitions],
            "value": value,
            "low": low,
            "high": high,
        }
    )


def analyse_core(
    predictions: pd.DataFrame,
    *,
    grouping: Grouping | None = None,
    ratio_definitions: Sequence[Ratio] = (),
    confusion: Confusion | None = None,
    human: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    age_model: pd.DataFrame | None = None,
    level: float = 0.95,
    interval_method: str = "wilson",
    n_boot: int = 1000,
    seed: int = 0,
    class_bias: dict[str, float] | None = None,
    drift_reference=None,
    max_drift: float = DEFAULT_MAX_DISTANCE,
    depth_unit: str | None = None,
    on_sample: Callable[[str], None] | None = None,
) -> CoreAbundance:
    """Run the full abundance analysis of one core.

    Parameters
    ----------
    predictions
        The ``classify`` predictions table; its depth column is ``depth`` or
        ``depth_<unit>`` (:mod:`foramflow.io.tables`).
    grouping, ratio_definitions
        Reported groups and ratios (default: every class its own group, ``unsure`` excluded).
    confusion
        Validation confusion matrix of the model; without it no correction is made.
    human
        ``(counts, positions)`` from :func:`foramflow.abundance.compare.read_human_counts`.
    age_model
        Depth–age table from :func:`foramflow.abundance.counts.read_age_model`; the axis
        becomes age.
    level, interval_method, n_boot, seed
        Interval level, binomial interval for counts, bootstrap replicates and seed for the
        corrected estimates.
    class_bias
        Per-class log-offsets from the bundle's calibration, applied before EM.
    drift_reference, max_drift
        See :func:`foramflow.abundance.drift.drift_table`.
    depth_unit
        Unit of the samples' depths (e.g. ``cm``); default: the one the predictions' depth
        column names (``depth_cm``), else the human counts', else the age model's, else not
        stated. Two sources that state different units are refused.
    """
    depth_unit = stated_depth_unit(predictions, depth_unit, human, age_model)
    predictions, _ = _depth_named_depth(predictions)
    grouping = grouping or Grouping()
    check_settings(
        predictions, grouping=grouping, ratio_definitions=ratio_definitions, n_boot=n_boot
    )
    labels = probability_labels(predictions)
    positions, axis, notes = _down_core_axis(predictions, age_model)
    axis_label = _axis_label(axis, depth_unit, notes)
    counts = class_counts(predictions, labels).reindex(positions.index)
    raw, raw_ratios = _raw_estimates(counts, grouping, ratio_definitions, level, interval_method)
    abundance, ratio_table = [raw], [raw_ratios]
    corrected, why_not = _corrections(
        predictions,
        labels,
        confusion,
        class_bias=class_bias,
        grouping=grouping,
        ratio_definitions=ratio_definitions,
        level=level,
        n_boot=n_boot,
        seed=seed,
        on_sample=on_sample,
    )
    if corrected is None:
        notes.append(why_not)
    else:
        abundance.append(corrected[0])
        ratio_table.append(corrected[1])
    result = CoreAbundance(
        positions=positions,
        axis=axis,
        axis_label=axis_label,
        class_counts=counts,
        abundance=pd.concat(abundance, ignore_index=True),
        ratios=pd.concat(ratio_table, ignore_index=True),
        drift=drift_table(predictions, reference=drift_reference, max_distance=max_drift).reindex(
            positions.index
        ),
        notes=notes,
        depth_unit=depth_unit,
    )
    if human is not None:
        _add_human(result, human, grouping, age_model, level, interval_method)
    return result


def _corrections(predictions, labels, confusion: Confusion | None, *, class_bias, **settings):
    """(ACC and EM abundances and ratios, None), or (None, why there is no correction)."""
    if confusion is None:
        return None, "The model bundle holds no validation confusion matrix: no correction."
    if not labels:
        return None, "The predictions hold no class probabilities: no correction."
    bias = None if not class_bias else [class_bias.get(c, 0.0) for c in labels]
    corrected = corrected_estimates(
        predictions,
        labels=labels,
        confusion=confusion.reorder(labels),
        validation=confusion.validation_in(labels),
        class_bias=bias,
        **settings,
    )
    return corrected, None


def _raw_estimates(counts, grouping, ratio_definitions, level, interval_method):
    """Classify-and-count abundances and ratios, with binomial intervals."""
    raw = relative_abundance(counts, grouping, level=level, method=interval_method)
    raw.insert(0, "method", "raw")
    raw_ratios = ratios(counts, grouping, ratio_definitions, level=level, method=interval_method)
    raw_ratios.insert(0, "method", "raw")
    return raw, raw_ratios


def _down_core_axis(predictions: pd.DataFrame, age_model: pd.DataFrame | None):
    """(sample positions, the column to plot them along, notes): age where an age model is
    given, else depth, else the samples' name order when no depth is known."""
    notes = []
    positions = sample_positions(predictions)
    axis = "depth"
    if age_model is not None:
        axis = str(age_model.columns[1])
        positions[axis] = depth_to_age(positions["depth"], age_model)
    if positions[axis].isna().all():
        axis = SAMPLE_ORDER
        positions = positions.sort_index()
        positions[axis] = np.arange(len(positions), dtype=float)
        notes.append("No sample has a known depth: samples are plotted in name order.")
    return positions, axis, notes


def _axis_label(axis: str, unit: str | None, notes: list[str]) -> str:
    """'depth (cm)': the down-core axis with its unit.

    An age axis is the age model's column name as written (``age_ka_BP``)."""
    if axis == SAMPLE_ORDER:
        return "sample order"
    if axis != "depth":
        return axis
    if unit is None:
        notes.append(
            "The depth unit is not known: give it, or name the depth column of the sample "
            "table or of the human counts with its unit (depth_cm)."
        )
        return "depth (unit not stated)"
    return f"depth ({unit})"


def stated_depth_unit(
    predictions: pd.DataFrame, depth_unit, human, age_model, files: Sequence = ("",) * 3
) -> str | None:
    """The depth unit given or stated by the inputs' depth column names (see
    :func:`analyse_core`); different units are refused, naming ``files`` (predictions,
    human counts, age model) where given."""
    predictions_file, human_file, age_file = (f"{f} " if f else "" for f in files)
    return resolve_depth_unit(
        {
            "the depth unit given": check_unit(depth_unit),
            f"the predictions {predictions_file}": _depth_named_depth(predictions)[1],
            f"the human counts {human_file}": _human_unit(human),
            f"the age model {age_file}": _age_model_unit(age_model),
        }
    )


def resolve_depth_unit(stated: dict[str, str | None]) -> str | None:
    """The one depth unit that the sources (description → unit or None) state, if any;
    sources that disagree are refused, naming them."""
    units = {where: unit for where, unit in stated.items() if unit is not None}
    if len(set(units.values())) > 1:
        said = "; ".join(f"{where.strip()}: {unit}" for where, unit in units.items())
        raise AbundanceError(f"the depths are stated in different units ({said})")
    return next(iter(units.values()), None)


def _depth_named_depth(predictions: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """The predictions with their depth column named ``depth`` (all unknown where there is
    none), and the unit its name stated."""
    try:
        column = find_depth_column(predictions.columns, "predictions")
        unit = depth_unit(column) if column else None
    except TableError as err:
        raise AbundanceError(str(err)) from err
    if column is None:
        return predictions.assign(**{DEPTH: np.nan}), None
    if column == DEPTH:
        return predictions, None
    return predictions.rename(columns={column: DEPTH}), unit


def _human_unit(human) -> str | None:
    """The unit the human counts' depth column names, when it is a depth unit."""
    unit = human[1].attrs.get("depth_unit") if human else None
    return unit.lower() if unit and unit.lower() in DEPTH_UNITS else None


def _age_model_unit(age_model: pd.DataFrame | None) -> str | None:
    if age_model is None or not is_depth_column(age_model.columns[0]):
        return None
    return depth_unit(age_model.columns[0])


def _add_human(result, human, grouping, age_model, level, interval_method) -> None:
    counts, positions = human
    known = set(result.class_counts.columns) | {UNSURE} | grouping.names()
    counts, unknown = split_known_taxa(counts, known)
    if unknown:
        columns = "column" if len(unknown) == 1 else "columns"
        verb = "names" if len(unknown) == 1 else "name"
        result.warnings.append(
            f"human counts: {columns} {', '.join(map(repr, unknown))} {verb} no class or "
            "group of the predictions; left out of the comparison and of the human totals"
        )
    if counts.columns.empty:
        result.notes.append(NO_SHARED_TAXON)
        return
    result.human = relative_abundance(counts, grouping, level=level, method=interval_method)
    positions = positions.reindex(counts.index)
    if "depth" not in positions:
        positions["depth"] = result.positions["depth"].reindex(counts.index)
    if result.axis not in positions:
        if age_model is not None:
            positions[result.axis] = depth_to_age(positions["depth"], age_model)
        else:
            positions[result.axis] = result.positions[result.axis].reindex(counts.index)
    result.human_positions = positions
    by_taxon, by_sample = [], []
    for method, table in result.abundance.groupby("method", sort=False):
        by_taxon.append(agreement_by_taxon(table, result.human).reset_index())
        by_sample.append(agreement_by_sample(table, result.human).reset_index())
        by_taxon[-1].insert(0, "method", method)
        by_sample[-1].insert(0, "method", method)
    result.agreement_taxon = pd.concat(by_taxon, ignore_index=True)
    result.agreement_sample = pd.concat(by_sample, ignore_index=True)
    if result.agreement_sample.empty:
        if counts.index.intersection(result.positions.index).empty:
            result.notes.append("No sample name is shared with the human counts: no agreement.")
        else:
            result.notes.append(NO_SHARED_TAXON)


def write_tables(result: CoreAbundance, out_dir: Path) -> list[Path]:
    """Write every table of ``result`` as CSV into ``out_dir``; returns the paths.

    The tables follow :mod:`foramflow.io.tables`: ``abundance.csv``'s depth column is
    ``depth_<unit>`` where the unit is known, and an age axis named with spaces in the age
    model is written with underscores."""
    out_dir.mkdir(parents=True, exist_ok=True)
    positions = result.positions.rename(
        columns=lambda c: depth_column(result.depth_unit) if c == DEPTH else "_".join(c.split())
    )
    tables = {
        "class_counts.csv": result.class_counts,
        "abundance.csv": result.abundance.merge(
            positions, left_on="sample", right_index=True, how="left"
        ),
        "ratios.csv": result.ratios,
        "drift.csv": result.drift,
        "human_abundance.csv": result.human,
        "agreement_by_taxon.csv": result.agreement_taxon,
        "agreement_by_sample.csv": result.agreement_sample,
    }
    written = []
    for name, table in tables.items():
        if table is None or table.empty:
            continue
        write_csv_atomic(out_dir / name, table, index=table.index.name is not None)
        written.append(out_dir / name)
    return written


def write_csv_atomic(path: Path, table: pd.DataFrame, *, index: bool) -> None:
    """A CSV written whole or not at all (a full disk leaves no truncated table)."""
    write_csv(table, path, index=index)
