import hashlib

import foramflow.bundle.folder as folder
from foramflow.bundle.folder import Bundle, write_bundle
from foramflow.bundle.schema import BundleMeta
from foramflow.imaging.preprocess import PreprocessSpec

META = BundleMeta(labels=["a", "b"], preprocessing=PreprocessSpec(size=16, channels=1))


def _bundle(path):
    return write_bundle(path, META, b"never read by load")


def test_a_run_bundle_finds_its_one_view_sibling(tmp_path):
    run = tmp_path / "run"
    bundle = Bundle.load(_bundle(run / "bundle"))
    assert bundle.faster_sibling() is None
    _bundle(run / "bundle_fast")
    assert bundle.faster_sibling().path == run / "bundle_fast"


def test_only_a_run_bundle_with_a_readable_sibling_has_one(tmp_path):
    other = Bundle.load(_bundle(tmp_path / "mine"))
    _bundle(tmp_path / "bundle_fast")
    assert other.faster_sibling() is None  # not a training run's bundle/
    assert Bundle.load(tmp_path / "bundle_fast").faster_sibling() is None
    run = tmp_path / "run"
    (run / "bundle_fast").mkdir(parents=True)
    (run / "bundle_fast" / "model.json").write_text("{not json")
    assert Bundle.load(_bundle(run / "bundle")).faster_sibling() is None


def test_a_model_file_is_read_and_hashed_once_while_it_stays_the_same(tmp_path, monkeypatch):
    """A classify run's checks ask for the same files and hashes many times: read once,
    and read again when the file is replaced."""
    bundle = Bundle.load(_bundle(tmp_path / "bundle"))
    reads, read = [], folder.read_bytes
    monkeypatch.setattr(folder, "read_bytes", lambda *a, **k: reads.append(a) or read(*a, **k))
    first = bundle.file_sha256()
    assert bundle.read_model() == b"never read by load" and bundle.file_sha256() == first
    assert first == hashlib.sha256(b"never read by load").hexdigest() and len(reads) == 1
    (tmp_path / "bundle" / "model.onnx").write_bytes(b"another network")
    assert bundle.read_model() == b"another network"
    assert bundle.file_sha256() == hashlib.sha256(b"another network").hexdigest()
    assert len(reads) == 2
