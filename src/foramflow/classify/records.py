"""Where a bundle's precision checks are kept: the bf16 and int8 records, model.int8.onnx.

In the bundle itself when it can be written, so that everyone who uses the bundle profits.
A bundle that cannot be written (read-only, shared on a lab server) or a zipped one keeps
them in the user's cache, ``${XDG_CACHE_HOME:-~/.cache}/foramflow/bundles/<hash>/``, or,
where that cannot be written either, beside the results in ``OUT/bundle_records/<hash>/``;
``<hash>`` is the bundle's hash (network, labels, preprocessing, calibration). Each such
folder holds a ``model.json`` with the records only, and the int8 model when there is one.
Records kept there are read back into the bundle's description for a run; the bundle's own
come first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from foramflow.classify.engine import BF16_FIELD, INT8_FIELD, bundle_hash, read_model
from foramflow.io.bundle import META_FILE, MODEL_FILE, Bundle, update_bundle_meta
from foramflow.io.files import write_json_atomic

RECORD_FIELDS = (BF16_FIELD, INT8_FIELD)
RESULTS_RECORDS_DIR = "bundle_records"


def bundle_is_writable(path: Path) -> bool:
    """Whether records can be added to the bundle at ``path`` (a folder this user may write)."""
    return path.is_dir() and os.access(path, os.W_OK)


def user_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "foramflow" / "bundles"


class PrecisionRecords:
    """The records of one bundle, read from and written to the first place that takes them."""

    def __init__(self, bundle: Bundle, results_dir: str | Path):
        self.bundle = bundle
        key = bundle_hash(bundle, read_model(bundle, MODEL_FILE))
        self.folders = [user_cache_root() / key, Path(results_dir) / RESULTS_RECORDS_DIR / key]

    def attach(self) -> None:
        """Add the records kept outside the bundle to its description (the bundle's first)."""
        for folder in self.folders:
            stored = _read_records(folder)
            for name in RECORD_FIELDS:
                if stored.get(name) and not self.bundle.meta.get(name):
                    self.bundle.meta[name] = _resolve_file(stored[name], folder)

    def keep(self, name: str, record: dict) -> Path | None:
        """Record ``record`` under ``name``; return the folder that holds it (None: nowhere
        could be written, and it lasts for this run only)."""
        return self.make(name, lambda folder: record)

    def make(self, name: str, produce: Callable[[Path], dict]) -> Path | None:
        """Record what ``produce(folder)`` returns, after it wrote its files into ``folder``,
        in the first place that takes both; None when it could be recorded nowhere."""
        for folder in self._places():
            try:
                record = produce(folder)
                if folder == self.bundle.path:
                    update_bundle_meta(folder, **{name: record})
                else:
                    stored = _read_records(folder) | {name: record}
                    write_json_atomic(folder / META_FILE, stored)
            except OSError:
                continue
            in_bundle = folder == self.bundle.path
            self.bundle.meta[name] = record if in_bundle else _resolve_file(record, folder)
            return folder
        return None

    def _places(self):
        """Folders to try in order, each created just before it is tried."""
        if bundle_is_writable(self.bundle.path):
            yield self.bundle.path
        for folder in self.folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError:
                continue
            yield folder


def _read_records(folder: Path) -> dict:
    try:
        stored = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {name: stored[name] for name in RECORD_FIELDS if isinstance(stored.get(name), dict)}


def _resolve_file(record: dict, folder: Path) -> dict:
    """The record with its model file (if any) as the absolute path the engine reads."""
    if not record.get("file"):
        return record
    return {**record, "file": str(folder.resolve() / record["file"])}
