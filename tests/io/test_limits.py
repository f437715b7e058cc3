"""io.limits: every size is capped before the bytes are read, and a refusal names the file."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from bombs import npz_bomb, zip_bytes
from foramflow.errors import ForamflowError
from foramflow.io import limits
from foramflow.io.limits import FileRefused, open_zip, parse_json, read_bytes, read_json, read_npz


def peak_bytes(call) -> int:
    """The most bytes Python (numpy included) held at once while ``call`` ran."""
    tracemalloc.start()
    try:
        call()
    except ForamflowError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_file_over_the_limit_is_refused_by_its_size(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(2048))
    assert read_bytes(path, limit=2048) == bytes(2048)
    with pytest.raises(FileRefused, match=r"big\.bin: file of 2048 bytes, over the limit"):
        read_bytes(path, limit=2047)


@pytest.mark.parametrize("depth", [limits.MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_refused_in_one_line(tmp_path, depth):
    path = tmp_path / "model.json"
    path.write_text("[" * depth + "]" * depth)
    with pytest.raises(FileRefused, match=r"model\.json: JSON nested .*deep") as refused:
        read_json(path)
    assert "\n" not in str(refused.value)


def test_json_within_the_limits_reads_back_exactly(tmp_path):
    data = {"labels": ["a", "b"], "deep": [[[[{"x": 1.5}]]]], "text": "[[[{{"}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    assert read_json(path) == data


def test_invalid_json_names_the_file():
    with pytest.raises(FileRefused, match=r"^run\.json: invalid JSON \(Expecting value"):
        parse_json(b'{"a":\n', "run.json")


def test_a_zip_holding_a_name_twice_is_refused(tmp_path):
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        archive.writestr("model.json", "{}")
        archive.writestr("sub/model.json", "{}")
        archive.writestr("model.json", "{}")
    refused = pytest.raises(FileRefused, match=r"bundle\.zip: the zip holds model\.json twice")
    with refused, open_zip(path):
        pass


def test_a_member_over_the_cap_is_refused_before_it_is_decompressed(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_MEMBER_BYTES", 2**20)
    path = tmp_path / "bundle.zip"
    path.write_bytes(zip_bytes([("model.onnx", b"", 64 * 2**20)]))
    with open_zip(path) as archive:
        with pytest.raises(FileRefused, match=r"bundle\.zip \(model\.onnx\): member of 64 MiB"):
            archive.read("model.onnx", limit=limits.MAX_MEMBER_BYTES)
        assert peak_bytes(lambda: archive.read("model.onnx", limit=2**20)) < 2**20


def test_a_member_is_read_whole_within_the_cap(tmp_path):
    path = tmp_path / "bundle.zip"
    path.write_bytes(zip_bytes([("model.onnx", b"head", 5000)]))
    with open_zip(path) as archive:
        assert archive.read("model.onnx", limit=5004) == b"head" + bytes(5000)


def test_an_npz_round_trip_gives_back_what_went_in(tmp_path):
    labels, probs = np.array([0, 1, 1], np.int32), np.array([[0.25, 0.75]] * 3, np.float32)
    path = tmp_path / "v.npz"
    np.savez_compressed(path, labels=labels, probabilities=probs)
    arrays = read_npz(path, path, ("labels", "probabilities"))
    np.testing.assert_array_equal(arrays["labels"], labels)
    np.testing.assert_array_equal(arrays["probabilities"], probs)
    assert arrays["probabilities"].dtype == np.float32


def test_an_npz_claiming_fifty_million_rows_is_refused_from_its_headers():
    """600 MB of zeros in half a megabyte: refused from the .npy headers, nothing loaded."""
    data = npz_bomb({"labels": ((50_000_000,), "<i4"), "probabilities": ((50_000_000, 2), "<f4")})
    assert len(data) < 2**20

    def read():
        read_npz(data, "validation.npz", ("labels", "probabilities"))

    with pytest.raises(FileRefused, match=r"^validation\.npz: arrays of 572.2 MiB, over"):
        read()
    assert peak_bytes(read) < 4 * 2**20


def test_an_npz_of_python_objects_is_refused(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, labels=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FileRefused, match=r"labels\.npy holds Python objects"):
        read_npz(buffer.getvalue(), "v.npz", ("labels",))


def test_an_npz_without_an_array_names_it():
    buffer = io.BytesIO()
    np.savez(buffer, labels=np.zeros(2))
    with pytest.raises(FileRefused, match=r"v\.npz: not a readable array file \(no array 'x'\)"):
        read_npz(buffer.getvalue(), "v.npz", ("labels", "x"))
