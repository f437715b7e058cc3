"""The unit of work both backends share: decode a batch of images, run the network, decide.

Decoding and the network are the bundle's one prediction path (:mod:`foramflow.bundle.predict`);
what classify adds is the listing's problems and the decision per image.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from foramflow.bundle.decisions import DecisionRule
from foramflow.bundle.decode import decode_batch
from foramflow.bundle.engine import Engine
from foramflow.classify.tables import predictions_table


def readable_paths(records: pd.DataFrame, images_dir: Path) -> list[str]:
    """The paths to decode: records whose listing found no problem (see find_images)."""
    return [str(images_dir / p) for p in records.loc[_no_problem(records), "path"]]


def with_listing_problems(records: pd.DataFrame, errors: list[str | None]) -> list[str | None]:
    """Per record, the problem its listing found, else its entry in ``errors`` (which holds
    one per readable path, in order)."""
    decoded = iter(errors)
    problems = records["problem"] if "problem" in records else [""] * len(records)
    return [problem or next(decoded) for problem in problems]


def _no_problem(records: pd.DataFrame) -> pd.Series:
    if "problem" not in records:
        return pd.Series(True, index=records.index)
    return records["problem"] == ""


def classify_records(
    records: pd.DataFrame,
    images_dir: Path,
    engine: Engine,
    rule: DecisionRule,
    *,
    batch_size: int,
) -> pa.Table:
    """Predictions for ``records`` (path, sample, depth, optional problem), decoding in this
    process."""
    spec = engine.bundle.spec
    parts = []
    for start in range(0, len(records), batch_size):
        part = records.iloc[start : start + batch_size]
        batch, errors = decode_batch(readable_paths(part, images_dir), spec)
        errors = with_listing_problems(part, errors)
        parts.append(predictions_table(part, engine.predict(batch), errors, rule))
    return pa.concat_tables(parts)
