"""One self-contained HTML report for a core: figures (embedded PNG), tables and flags.

Self-contained means one file to e-mail or archive: images are inlined as base64 data URIs
and the style sheet is inline, so it opens in any browser without the output folder.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from foramflow.abundance.analysis import METHOD_NAMES, CoreAbundance
from foramflow.io.files import atomic_write

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
th { background: #f3f3f3; } tr.flagged td { background: #ffe9c7; }
img { max-width: 100%; } .note { color: #8a4b00; } .small { color: #666; font-size: 0.85em; }
"""


def png_data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _table(frame: pd.DataFrame, *, flagged=None, digits: int = 3) -> str:
    frame = frame.copy()
    for column in frame.select_dtypes("float").columns:
        frame[column] = frame[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        cls = ' class="flagged"' if flagged is not None and flagged[i] else ""
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in row)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _percent_table(abundance: pd.DataFrame, method: str) -> pd.DataFrame:
    """Samples × taxa table of 'value [low–high]' in percent for one method."""
    table = abundance[abundance["method"] == method]
    text = table.apply(
        lambda r: f"{100 * r.fraction:.1f} [{100 * r.low:.1f}–{100 * r.high:.1f}]", axis=1
    )
    wide = table.assign(text=text).pivot(index="sample", columns="taxon", values="text")
    return wide.reindex(
        index=list(dict.fromkeys(table["sample"])), columns=list(dict.fromkeys(table["taxon"]))
    ).reset_index()


def write_report(
    path: str | Path,
    result: CoreAbundance,
    *,
    title: str,
    figures: Mapping[str, str | Path],
    level: float,
    details: Mapping[str, str] | None = None,
) -> Path:
    """Write the HTML report; ``figures`` maps captions to PNG files."""
    path = Path(path)
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        *_heading_notes(result, details),
        *_drift_warnings(result),
        *_figures(figures),
        *_agreement(result),
        *_estimate_tables(result, level),
    ]
    document = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    atomic_write(path, lambda tmp: tmp.write_text(document, encoding="utf-8"))
    return path


def _heading_notes(result: CoreAbundance, details: Mapping[str, str] | None) -> list[str]:
    """The run's details, then the inputs left out (warnings) and the notes."""
    parts = []
    if details:
        items = "".join(
            f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in details.items()
        )
        parts.append(f"<ul class='small'>{items}</ul>")
    parts += [f"<p class='note'>Warning: {html.escape(warning)}</p>" for warning in result.warnings]
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in result.notes]
    return parts


def _drift_warnings(result: CoreAbundance) -> list[str]:
    flags = result.drift[result.drift["flagged"]]
    if not len(flags):
        return ["<h2>Drift warnings</h2>", "<p>No sample is flagged.</p>"]
    names = ", ".join(html.escape(str(s)) for s in flags.index)
    return [
        "<h2>Drift warnings</h2>",
        f"<p class='note'>{len(flags)} sample(s) look unlike the "
        f"{html.escape(result.drift.attrs.get('reference', 'reference'))}: {names}. "
        "Their abundances, corrected ones above all, assume a classifier that behaves as "
        "on the validation set; check their images.</p>",
    ]


def _figures(figures: Mapping[str, str | Path]) -> list[str]:
    return [
        f"<h2>{html.escape(caption)}</h2><img src='{png_data_uri(png)}' "
        f"alt='{html.escape(caption)}'>"
        for caption, png in figures.items()
    ]


def _agreement(result: CoreAbundance) -> list[str]:
    if result.agreement_taxon is None or result.agreement_taxon.empty:
        return []
    summary = (
        result.agreement_sample.groupby("method", sort=False)["bray_curtis"]
        .agg(["count", "mean", "median", "max"])
        .reset_index()
    )
    return [
        "<h2>Agreement with the human counts</h2>",
        "<p class='small'>Differences in percentage points (automatic − human) "
        "over the samples both counted; Bray–Curtis per sample: 0 = identical.</p>",
        _table(result.agreement_taxon),
        "<h3>Bray–Curtis dissimilarity per sample (summary)</h3>",
        _table(summary),
    ]


def _estimate_tables(result: CoreAbundance, level: float) -> list[str]:
    """Abundances per method, ratios, drift statistics and class counts."""
    parts = []
    pct = round(100 * level)
    for method in result.abundance["method"].unique():
        parts.append(
            f"<h2>Relative abundance (%), {html.escape(METHOD_NAMES[method])}, "
            f"with {pct} % interval</h2>"
        )
        parts.append(_table(_percent_table(result.abundance, method)))
    if not result.ratios.empty:
        parts.append(f"<h2>Ratios with {pct} % interval</h2>")
        parts.append(_table(result.ratios))
    parts.append("<h2>Drift statistics per sample</h2>")
    parts.append(
        "<p class='small'>KS distance: largest gap between the sample's distribution "
        "of top probabilities and the reference's.</p>"
    )
    parts.append(_table(result.drift.reset_index(), flagged=result.drift["flagged"].to_numpy()))
    parts.append("<h2>Images per sample and predicted class</h2>")
    parts.append(_table(result.class_counts.reset_index()))
    return parts
