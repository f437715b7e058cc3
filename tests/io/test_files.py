"""Atomic writes: whole files or none, readable as the umask says."""

import os
import stat

import pytest

from foramflow.io.files import atomic_write, write_json_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_results_respect_the_umask(tmp_path, umask_022):
    write_json_atomic(tmp_path / "model.json", {"a": 1})
    atomic_write(tmp_path / "counts.csv", lambda tmp: tmp.write_text("x\n"), durable=True)
    assert mode(tmp_path / "model.json") == 0o644
    assert mode(tmp_path / "counts.csv") == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "run.json"
    write_json_atomic(target, {"old": True})

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text().strip().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
