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
