"""The results folder has one owner, :mod:`foramflow.classify.results`: its file names and
its run record are spelled there only, and run.json is read and written through it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from foramflow.classify.results import RUN_FILE, RunRecord, read_run, write_run
from foramflow.errors import ForamflowError

SRC = Path(__file__).resolve().parents[2] / "src" / "foramflow"
OWNER = SRC / "classify" / "results.py"

# What only the owner may spell: the file names as strings, and run.json's name.
OWNED = [
    r"\bRUN_FILE\b",
    r"""["']run\.json["']""",
    r"""["']predictions\.parquet["']""",
    r"""["']manifest\.parquet["']""",
    r"""["']counts\.csv["']""",
    r"""["']relative_abundance\.csv["']""",
    r"""["']chunks["']""",
]


def test_only_the_results_module_spells_the_results_folders_file_names():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == OWNER:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(re.search(pattern, line) for pattern in OWNED):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_guard_sees_a_module_that_reads_run_json_by_hand():
    line = 'info = json.loads((folder / "run.json").read_text())'
    assert any(re.search(pattern, line) for pattern in OWNED)


RECORD = {
    "bundle": "/b",
    "bundle_hash": "ab" * 32,
    "precision": "fp32",
    "n_images": 13,
    "depth_unit": None,
    "threshold": 0.8,
    "class_thresholds": {"a": 0.9},
    "chunk_size": 4,
    "skipped": [{"path": "S2/loop", "reason": "symbolic link loop"}],
    "state": "complete",
    "a key of a later version": [1, 2],
}


def test_a_run_record_round_trips_exactly(tmp_path):
    write_run(tmp_path, RunRecord.model_validate(RECORD))
    assert json.loads((tmp_path / RUN_FILE).read_text()) == RECORD
    again = read_run(tmp_path)
    assert again.to_json() == RECORD
    assert again.n_images == 13 and again.class_thresholds == {"a": 0.9}


def test_a_folder_without_a_run_record_has_none(tmp_path):
    assert read_run(tmp_path) is None


@pytest.mark.parametrize(
    ("field", "value"), [("n_images", "many"), ("state", "half done"), ("skipped", "S2")]
)
def test_a_field_of_the_wrong_type_is_refused_naming_the_file_and_the_field(tmp_path, field, value):
    (tmp_path / RUN_FILE).write_text(json.dumps({**RECORD, field: value}))
    with pytest.raises(ForamflowError) as refused:
        read_run(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / RUN_FILE}: invalid run.json: {field}")


def test_a_record_that_is_not_an_object_is_refused_naming_the_file(tmp_path):
    (tmp_path / RUN_FILE).write_text("[1, 2]")
    with pytest.raises(ForamflowError, match=re.escape(str(tmp_path / RUN_FILE))):
        read_run(tmp_path)
