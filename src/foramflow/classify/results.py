"""The results folder of ``foramflow classify``: its file names and its run record, run.json.

Every module that reads or writes a results folder (classify, the abundance step, the demo,
the command line) names its files through this module and reads run.json through
:func:`read_run`, which validates it, and writes it through :func:`write_run`.

Layout::

    RESULTS_DIR/
      run.json             the run record (:class:`RunRecord`)
      manifest.parquet     the input list: path, sample, depth, size, mtime_ns (chunk order)
      chunks/000123.parquet  predictions for manifest rows [123·C, 124·C), C = chunk size
      predictions.parquet  all chunks merged, once every chunk is done
      counts.csv, relative_abundance.csv
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from foramflow.io.files import write_json_atomic
from foramflow.io.limits import FileRefused, read_json_object

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.parquet"
CHUNKS_DIR = "chunks"
PREDICTIONS_FILE = "predictions.parquet"
COUNTS_FILE = "counts.csv"
ABUNDANCE_FILE = "relative_abundance.csv"


class RunRecord(BaseModel):
    """run.json: what decides a run's results (its job), how it was cut into chunks, and
    where it stands. Every field may be absent (a record written by hand, or cut short);
    those present must have their type. Keys this version does not know are kept."""

    model_config = ConfigDict(extra="allow")

    # The job: a run with another one cannot be resumed.
    bundle: str | None = None
    bundle_hash: str | None = None
    model_file: str | None = None
    precision: str | None = None
    images_dir: str | None = None
    input_hash: str | None = None
    n_images: int | None = None
    samples: str | None = None
    depth_unit: str | None = None
    threshold: float | None = None
    class_thresholds: dict[str, float] | None = None
    # The run.
    chunk_size: int | None = None
    fingerprint: str | None = None
    skipped: list[dict[str, str]] | None = None
    state: Literal["running", "complete"] | None = None
    setup: dict[str, Any] | None = None  # precision, threads, batch size and their timings
    started: str | None = None
    foramflow: str | None = None
    finished: str | None = None
    n_errors: int | None = None
    n_unsure: int | None = None
    n_resumed: int | None = None
    seconds: float | None = None

    def with_fields(self, **fields: Any) -> RunRecord:
        """This record with ``fields`` set (validated again)."""
        return RunRecord.model_validate({**self.to_json(), **fields})

    def to_json(self) -> dict:
        """The record as run.json holds it: the fields it was given, in their order."""
        return self.model_dump(mode="json", exclude_unset=True)


def run_path(folder: str | Path) -> Path:
    return Path(folder) / RUN_FILE


def read_run(folder: str | Path) -> RunRecord | None:
    """The run record of a results folder, None where it has none; a file that is not a valid
    record is refused, naming it and the field."""
    path = run_path(folder)
    if not path.is_file():
        return None
    data = read_json_object(path, what=RUN_FILE)
    try:
        return RunRecord.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the record"
        raise FileRefused(path, f"invalid {RUN_FILE}: {where}: {first['msg']}") from None


def write_run(folder: str | Path, record: RunRecord) -> None:
    """Write the run record whole or not at all."""
    write_json_atomic(run_path(folder), record.to_json())
