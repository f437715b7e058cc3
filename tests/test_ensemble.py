"""An ensemble's ONNX graph gives the mean of its members' probabilities."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from classify.conftest import brightness_model
from foramflow.bundle.schema import BundleError
from foramflow.ensemble import EnsembleError, Member, join
from foramflow.imaging.preprocess import resize_bilinear


def run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


def resize(x, size):
    """The preprocessing's own resizing, image by image."""
    return np.stack([resize_bilinear(i.transpose(1, 2, 0), size).transpose(2, 0, 1) for i in x])


def colour_brightness_model(size: int):
    """The brightness model on the mean of three channels."""
    model = brightness_model(size=size)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3
    weights = next(t for t in model.graph.initializer if t.name == "weights")
    row = numpy_helper.to_array(weights)
    weights.CopyFrom(numpy_helper.from_array(np.repeat(row, 3, axis=0) / 3, "weights"))
    return model


def test_the_ensemble_is_the_mean_of_members_of_different_sizes():
    sharp, soft = brightness_model(size=16, steepness=20.0), brightness_model(size=8, steepness=4)
    members = [Member(sharp, size=16, channels=1), Member(soft, size=8, channels=1)]
    x = np.random.default_rng(0).random((5, 1, 16, 16)).astype(np.float32)
    joined = run(join(members), x)
    expected = (run(sharp, x) + run(soft, resize(x, 8))) / 2
    assert np.allclose(joined, expected, atol=1e-5)
    assert np.allclose(joined.sum(axis=1), 1.0, atol=1e-5)


def test_a_grey_member_of_a_colour_ensemble_sees_luma():
    grey = brightness_model(size=8)
    colour = Member(colour_brightness_model(size=8), size=8, channels=3)
    x = np.random.default_rng(1).random((3, 3, 8, 8)).astype(np.float32)
    luma = (x * np.array([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdims=True)
    joined = run(join([Member(grey, size=8, channels=1), colour]), x)
    expected = (run(grey, luma) + run(colour.model, x)) / 2
    assert np.allclose(joined, expected, atol=1e-5)


def test_no_members_is_an_error():
    with pytest.raises(EnsembleError):
        join([])


def test_the_ensemble_command_writes_a_bundle_that_classify_runs(tmp_path):
    from typer.testing import CliRunner

    from classify.conftest import write_bundle, write_tree
    from foramflow.bundle import Bundle
    from foramflow.classify.runner import classify_folder
    from foramflow.cli import app

    first = write_bundle(tmp_path / "a", steepness=20.0)
    second = write_bundle(tmp_path / "b", steepness=4.0)
    result = CliRunner().invoke(app, ["ensemble", str(first), str(second), "--out",
                                      str(tmp_path / "ens")])  # fmt: skip
    assert result.exit_code == 0, result.output
    ensemble = Bundle.load(tmp_path / "ens")
    assert ensemble.labels == Bundle.load(first).labels
    images = write_tree(tmp_path / "images")
    joined = classify_folder(ensemble.path, images, tmp_path / "r1", precision="fp32")
    alone = [classify_folder(b, images, tmp_path / f"r{b.name}", precision="fp32")
             for b in (first, second)]  # fmt: skip
    import pandas as pd

    def bright(result):
        table = pd.read_parquet(result.predictions_path).sort_values("path")
        return table["prob_bright"].to_numpy()

    mean = (bright(alone[0]) + bright(alone[1])) / 2
    assert np.allclose(bright(joined), mean, atol=1e-5)


def test_members_with_other_classes_are_refused(tmp_path):
    from classify.conftest import write_bundle
    from foramflow.bundle import update_bundle_meta
    from foramflow.ensemble import ensemble_bundles

    first = write_bundle(tmp_path / "a")
    other = write_bundle(tmp_path / "b")
    update_bundle_meta(other, labels=["light", "heavy"])
    with pytest.raises(EnsembleError, match="differ"):
        ensemble_bundles([first, other], tmp_path / "ens")


def test_members_validated_on_the_same_images_give_the_ensemble_their_mean(tmp_path):
    from classify.conftest import write_bundle
    from foramflow.bundle import Bundle, update_bundle_meta
    from foramflow.bundle.schema import TrainingInfo, TrainingSet
    from foramflow.bundle.validation import ValidationSet, read_validation, write_validation
    from foramflow.ensemble import ensemble_bundles
    from foramflow.evaluate.calibration import fit_temperature

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)

    def member(name: str, steepness: float, seed: int = 0):
        folder = write_bundle(tmp_path / name, steepness=steepness)
        # informative, so that the temperature fitted on their mean lies inside its range
        probs = 0.6 * rng.dirichlet([1.0, 1.0], len(labels)) + 0.4 * np.eye(2)[labels]
        write_validation(folder, ValidationSet(labels, probs), Bundle.load(folder).read_model())
        update_bundle_meta(
            folder,
            training_set=TrainingSet(hash="the same images"),
            training=TrainingInfo(seed=seed, val_fraction=0.2),
        )
        return folder, probs

    (first, p1), (second, p2) = member("a", 20.0), member("b", 4.0)
    ensemble = Bundle.load(ensemble_bundles([first, second], tmp_path / "ens"))
    validation = read_validation(ensemble)
    np.testing.assert_allclose(validation.probabilities, (p1 + p2) / 2)
    right = validation.probabilities.argmax(axis=1) == labels
    assert ensemble.meta.metrics["accuracy"] == pytest.approx(right.mean())
    assert np.trace(ensemble.meta.validation_confusion.matrix) == right.sum()
    assert ensemble.meta.calibration.temperature == pytest.approx(
        fit_temperature(validation.probabilities, labels)
    )

    third, _ = member("c", 4.0, seed=1)  # another seed: another validation split
    apart = Bundle.load(ensemble_bundles([first, third], tmp_path / "apart"))
    assert read_validation(apart) is None
    assert apart.meta.validation_confusion is None and apart.meta.calibration is None


def ensemble_command(*args):
    from typer.testing import CliRunner

    from foramflow.cli import app

    return CliRunner().invoke(app, ["ensemble", *map(str, args)])


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize(
    "where, says",
    [("a", "is"), ("a/ens", "is inside"), (".", "holds")],
)
def test_an_ensemble_is_never_written_over_into_or_around_a_member(tmp_path, where, says):
    from classify.conftest import write_bundle

    first = write_bundle(tmp_path / "a", steepness=20.0)
    second = write_bundle(tmp_path / "b", steepness=4.0)
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    out = tmp_path / where
    text = error_line(ensemble_command(first, second, "--out", out))
    assert text.startswith(f"error: {out}: {says} {first}, a member of the ensemble;"), text
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


def test_a_run_folder_member_is_protected_as_its_bundle(tmp_path):
    from classify.conftest import write_bundle

    run = tmp_path / "run"
    write_bundle(run / "bundle")
    other = write_bundle(tmp_path / "b")
    text = error_line(ensemble_command(run, other, "--out", run / "bundle"))
    assert text.startswith(f"error: {run / 'bundle'}: is {run / 'bundle'}, a member"), text


@pytest.mark.parametrize(
    "content, says",
    [(b"", "not a valid ONNX model"), (b"\x08\x07garbage\xff\xff", "not a valid ONNX model")],
    ids=["empty", "corrupt"],
)
def test_a_corrupt_or_empty_member_is_one_line_naming_it(tmp_path, content, says):
    from classify.conftest import write_bundle

    first = write_bundle(tmp_path / "a")
    broken = write_bundle(tmp_path / "b")
    (broken / "model.onnx").write_bytes(content)
    text = error_line(ensemble_command(first, broken, "--out", tmp_path / "ens"))
    assert text.startswith(f"error: {broken / 'model.onnx'}: {says}"), text
    assert not (tmp_path / "ens").exists()


def test_a_member_whose_outputs_are_not_finite_is_refused(tmp_path):
    from classify.conftest import write_bundle

    first = write_bundle(tmp_path / "a")
    nan = write_bundle(tmp_path / "b", steepness=float("nan"))
    text = error_line(ensemble_command(first, nan, "--out", tmp_path / "ens"))
    assert text.startswith(f"error: {nan / 'model.onnx'}: gives NaN or infinite"), text


def test_a_member_whose_validation_outputs_are_not_finite_is_refused(tmp_path):
    from classify.conftest import write_bundle
    from foramflow.bundle import Bundle, update_bundle_meta
    from foramflow.bundle.schema import TrainingInfo, TrainingSet
    from foramflow.bundle.validation import ValidationSet, write_validation
    from foramflow.ensemble import ensemble_bundles

    members = []
    for name, spoilt in (("a", False), ("b", True)):
        folder = write_bundle(tmp_path / name)
        probs = np.full((4, 2), 0.5)
        if spoilt:
            probs[2] = [np.nan, np.inf]
        model = Bundle.load(folder).read_model()
        write_validation(folder, ValidationSet(np.array([0, 1, 0, 1]), probs), model)
        update_bundle_meta(
            folder,
            training_set=TrainingSet(hash="the same images"),
            training=TrainingInfo(seed=0, val_fraction=0.2),
        )
        members.append(folder)
    with pytest.raises(BundleError, match=f"{members[1] / 'validation.npz'}: .*not finite"):
        ensemble_bundles(members, tmp_path / "ens")
