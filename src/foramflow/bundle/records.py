"""Where a bundle's precision checks are kept: the bf16 and int8 records, the int8 model.

In the bundle itself when it can be written, so that everyone who uses the bundle profits.
A bundle that cannot be written (read-only, shared on a lab server) or a zipped one keeps
them in the user's cache, ``${XDG_CACHE_HOME:-~/.cache}/foramflow/bundles/<hash>/``, or,
where that cannot be written either, beside the results in ``OUT/bundle_records/<hash>/``;
``<hash>`` is the bundle's hash (network, labels, preprocessing, calibration). Each such
folder holds the records only, and the int8 model when there is one. Records kept there are
read back into the bundle's description for a run; the bundle's own come first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from foramflow.bundle.engine import describes_this_network
from foramflow.bundle.folder import Bundle, read_precision_records, write_precision_records
from foramflow.bundle.schema import PrecisionCheck

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
        key = bundle.network().hash
        self.folders = [user_cache_root() / key, Path(results_dir) / RESULTS_RECORDS_DIR / key]

    def attach(self) -> None:
        """Add the records kept outside the bundle to its description (the bundle's first)."""
        for folder in self.folders:
            for name, record in read_precision_records(folder).items():
                own = getattr(self.bundle.meta, name)
                if own is None or not describes_this_network(own, self.bundle):
                    self.bundle.attach(**{name: record})

    def keep(self, name: str, record: PrecisionCheck) -> Path | None:
        """Record ``record`` under ``name``; return the folder that holds it (None: nowhere
        could be written, and it lasts for this run only)."""
        return self.make(name, lambda folder: record)

    def make(self, name: str, produce: Callable[[Path], PrecisionCheck]) -> Path | None:
        """Record what ``produce(folder)`` returns, after it wrote its files into ``folder``,
        in the first place that takes both; None when it could be recorded nowhere."""
        for folder in self._places():
            try:
                record = produce(folder)
                if folder == self.bundle.path:
                    self.bundle.update(**{name: record})
                else:
                    write_precision_records(folder, **{name: record})
                    self.bundle.attach(**{name: record.with_file_in(folder)})
            except OSError:
                continue
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
