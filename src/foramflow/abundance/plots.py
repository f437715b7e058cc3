"""Down-core figures in the style of Marchant et al. 2020, Figs. 6 and 9.

One panel per taxon with relative abundance (%) against depth or age: human counts as blue
squares, the classifier's raw counts as red circles, the corrected estimates beside them, each
with its confidence interval as error bars; then a panel of images per sample and one per
ratio. Samples flagged for drift are shaded in every panel.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from foramflow.abundance.analysis import METHOD_NAMES, CoreAbundance
from foramflow.io.files import atomic_write

STYLE = {
    "human": {"color": "tab:blue", "marker": "s", "label": "human count"},
    "raw": {"color": "tab:red", "marker": "o", "label": "automatic: " + METHOD_NAMES["raw"]},
    "acc": {"color": "tab:green", "marker": "D", "label": "automatic: " + METHOD_NAMES["acc"]},
    "em": {"color": "tab:purple", "marker": "^", "label": "automatic: " + METHOD_NAMES["em"]},
}
TRUTH_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.2, "label": "truth"}


def _series(ax, x, table, value, style, scale=100.0, *, shift=0.0):
    y = table[value].to_numpy() * scale
    err = [
        (table[value] - table["low"]).clip(lower=0).to_numpy() * scale,
        (table["high"] - table[value]).clip(lower=0).to_numpy() * scale,
    ]
    ax.errorbar(
        x + shift,
        y,
        yerr=err,
        markersize=3.5,
        linewidth=0.9,
        elinewidth=0.7,
        capsize=0,
        alpha=0.9,
        **style,
    )


def _positions(table: pd.DataFrame, positions: pd.DataFrame, axis: str) -> pd.DataFrame:
    merged = table.merge(positions[[axis]], left_on="sample", right_index=True, how="left")
    return merged.dropna(subset=[axis]).sort_values(axis)


def plot_downcore(
    result: CoreAbundance,
    *,
    methods=("raw", "acc", "em"),
    truth: pd.DataFrame | None = None,
    title: str | None = None,
):
    """The down-core figure; returns a matplotlib Figure.

    ``truth`` (``sample, taxon, fraction``) adds the known abundances of a simulated core.
    """
    positions, axis = result.positions, result.axis
    abundance = result.abundance[result.abundance["method"].isin(methods)]
    taxa = list(dict.fromkeys(abundance.loc[abundance["method"] == "raw", "taxon"]))
    ratio_names = list(dict.fromkeys(result.ratios.get("ratio", pd.Series(dtype=str))))
    n_panels = len(taxa) + 1 + len(ratio_names)
    ncols = min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(4.2 * ncols, 2.7 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    span = positions[axis].max() - positions[axis].min()
    shift = 0.004 * span if span > 0 else 0.0  # side by side, not on top of each other
    for ax, taxon in zip(axes, taxa, strict=False):
        _taxon_panel(ax, result, taxon, abundance, methods, shift, truth)
    _images_panel(axes[len(taxa)], result)
    for ax, name in zip(axes[len(taxa) + 1 :], ratio_names, strict=False):
        _ratio_panel(ax, result, name, methods, shift)
    flagged = positions.index[result.drift["flagged"].reindex(positions.index, fill_value=False)]
    _finish_axes(axes, n_panels, ncols, positions, axis, flagged, result.axis_label)
    _legend(fig, axes[0], flagged)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def _taxon_panel(ax, result: CoreAbundance, taxon, abundance, methods, shift, truth) -> None:
    """One taxon: human counts, each method's estimates side by side, and the truth."""
    positions, axis = result.positions, result.axis
    if result.human is not None:
        human = _positions(
            result.human[result.human["taxon"] == taxon], result.human_positions, axis
        )
        _series(ax, human[axis].to_numpy(), human, "fraction", STYLE["human"])
    of_taxon = abundance[abundance["taxon"] == taxon]
    for i, method in enumerate(methods):
        table = _positions(of_taxon[of_taxon["method"] == method], positions, axis)
        if len(table):
            _series(
                ax, table[axis].to_numpy(), table, "fraction", STYLE[method], shift=(i - 1) * shift
            )
    if truth is not None:
        known = _positions(truth[truth["taxon"] == taxon], positions, axis)
        ax.plot(known[axis], 100 * known["fraction"], **TRUTH_STYLE)
    ax.set_title(taxon, fontsize=10, style="italic")
    ax.set_ylabel("relative abundance (%)", fontsize=8)
    ax.set_ylim(bottom=0)


def _images_panel(ax, result: CoreAbundance) -> None:
    positions, axis = result.positions, result.axis
    images = result.class_counts.sum(axis=1).reindex(positions.index)
    ax.plot(positions[axis], images, "o-", color="tab:red", markersize=3.5, linewidth=0.9)
    ax.set_title("images per sample", fontsize=10)
    ax.set_ylabel("images", fontsize=8)
    ax.set_ylim(bottom=0)


def _ratio_panel(ax, result: CoreAbundance, name: str, methods, shift) -> None:
    ratios = result.ratios[result.ratios["ratio"] == name]
    for i, method in enumerate(methods):
        table = _positions(ratios[ratios["method"] == method], result.positions, result.axis)
        if len(table):
            _series(
                ax,
                table[result.axis].to_numpy(),
                table,
                "value",
                STYLE[method],
                scale=1.0,
                shift=(i - 1) * shift,
            )
    ax.set_title(name, fontsize=10)
    ax.set_ylabel("ratio", fontsize=8)


def _finish_axes(axes, n_panels: int, ncols: int, positions, axis: str, flagged, label) -> None:
    """Shade the drift-flagged samples, grid every panel, label the bottom row's axes."""
    for ax in axes[:n_panels]:
        for sample in flagged:
            ax.axvline(positions.at[sample, axis], color="orange", alpha=0.35, linewidth=6)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    for ax in axes[max(0, n_panels - ncols) : n_panels]:
        ax.set_xlabel(label, fontsize=9)
        ax.xaxis.set_tick_params(labelbottom=True)


def _legend(fig: Figure, first_ax, flagged) -> None:
    handles, labels = first_ax.get_legend_handles_labels()
    if len(flagged):
        handles.append(Line2D([], [], color="orange", alpha=0.35, linewidth=6))
        labels.append("drift warning")
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(len(labels), 3),
        fontsize=8,
        frameon=False,
    )


def save_figure(fig: Figure, path) -> None:
    """Save whole or not at all, in the format the suffix names (PNG without one)."""
    image_format = Path(path).suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format=image_format))
