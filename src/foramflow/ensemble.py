"""Ensembles: several networks joined into one ONNX graph that averages their probabilities.

The joined graph takes the largest member's input (the preprocessed image batch, colour
when any member reads colour) and feeds each member its own view of it: resized to the
member's size (bilinear with antialiasing, as the preprocessing resizes), and reduced to
luma for a member that reads grey. The probabilities of the members are averaged. A member whose
size differs from the input's therefore sees the image resized twice (from the original
to the ensemble's size, then to its own); bilinear resizing makes that a small change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from foramflow.bundle.schema import RUN_BUNDLE
from foramflow.errors import ForamflowError

if TYPE_CHECKING:
    from foramflow.bundle.validation import ValidationSet

INPUT = "image"
OUTPUT = "probabilities"
_LUMA = (0.299, 0.587, 0.114)  # as the preprocessing turns colour into grey
RESIZE_OPSET = 18  # Resize with antialiasing, as Pillow's bilinear resize of the preprocessing


class EnsembleError(ForamflowError, ValueError):
    """Members that cannot be joined (different classes, no members)."""


@dataclass(frozen=True)
class Member:
    """One network of the ensemble: its ONNX model and the input it expects."""

    model: onnx.ModelProto
    size: int
    channels: int


def join(members: Sequence[Member]) -> onnx.ModelProto:
    """One ONNX model: input (N, C, S, S) at the largest member's size, mean probabilities out."""
    if not members:
        raise EnsembleError("an ensemble needs at least one member")
    size = max(m.size for m in members)
    channels = max(m.channels for m in members)
    opset = max(_opset(m.model) for m in members)
    if any(m.size != size for m in members):
        opset = max(opset, RESIZE_OPSET)
    nodes, initializers, outputs = [], [], []
    for i, member in enumerate(members):
        prefix = f"m{i}_"
        model = compose.add_prefix(_at_opset(member.model, opset), prefix)
        source = _view(i, member, size, channels, nodes, initializers)
        graph = model.graph
        renames = {graph.input[0].name: source}
        for node in graph.node:
            node.input[:] = [renames.get(name, name) for name in node.input]
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        outputs.append(graph.output[0].name)
    nodes.append(helper.make_node("Sum", outputs, ["sum"]))
    initializers.append(numpy_helper.from_array(np.array(len(members), np.float32), "n"))
    nodes.append(helper.make_node("Div", ["sum", "n"], [OUTPUT]))
    n_classes = _classes(members[0].model)
    graph = helper.make_graph(
        nodes,
        "foramflow_ensemble",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", channels, size, size])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["n", n_classes])],
        initializer=initializers,
    )
    joined = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    joined.ir_version = max(m.model.ir_version for m in members)
    onnx.checker.check_model(joined)
    return joined


def _view(i, member: Member, size: int, channels: int, nodes, initializers) -> str:
    """Nodes that turn the ensemble's input into member ``i``'s; returns the tensor name."""
    name = INPUT
    if member.channels == 1 and channels == 3:
        weights = np.array(_LUMA, np.float32).reshape(1, 3, 1, 1)
        initializers.append(numpy_helper.from_array(weights, f"v{i}_luma"))
        nodes.append(helper.make_node("Mul", [name, f"v{i}_luma"], [f"v{i}_weighted"]))
        nodes.append(
            helper.make_node("ReduceSum", [f"v{i}_weighted", "v_axis1"], [f"v{i}_grey"],
                             keepdims=1)
        )  # fmt: skip
        if not any(t.name == "v_axis1" for t in initializers):
            initializers.append(numpy_helper.from_array(np.array([1], np.int64), "v_axis1"))
        name = f"v{i}_grey"
    elif member.channels == 3 and channels == 3:
        pass
    elif member.channels != channels:
        raise EnsembleError(f"member {i + 1} reads {member.channels} channels, not {channels}")
    if member.size != size:
        scale = np.array([1, 1, member.size / size, member.size / size], np.float32)
        initializers.append(numpy_helper.from_array(scale, f"v{i}_scale"))
        nodes.append(
            helper.make_node("Resize", [name, "", f"v{i}_scale"], [f"v{i}_resized"],
                             mode="linear", antialias=1, exclude_outside=1)
        )  # fmt: skip
        name = f"v{i}_resized"
    return name


def _opset(model: onnx.ModelProto) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _at_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    if _opset(model) == opset:
        return model
    from onnx import version_converter

    return version_converter.convert_version(model, opset)


def _classes(model: onnx.ModelProto) -> int | str:
    dims = model.graph.output[0].type.tensor_type.shape.dim
    return dims[1].dim_value if len(dims) > 1 and dims[1].dim_value else "k"


def ensemble_bundles(members: Sequence[str | Path], out: str | Path) -> Path:
    """Join model bundles (or run folders holding one) into one ensemble bundle at ``out``.

    The members must know the same classes in the same order. The ensemble's threshold
    is the members' lowest, and its description lists the members.
    """
    from foramflow.bundle import Bundle, BundleMeta, write_bundle
    from foramflow.bundle.validation import write_validation
    from foramflow.imaging.preprocess import PreprocessSpec
    from foramflow.io.files import prepare_output_dir

    if not members:
        raise EnsembleError("an ensemble needs at least one member")
    _refuse_out_over_members(Path(out), [Path(m) for m in members])
    bundles = [Bundle.load(_bundle_folder(Path(m))) for m in members]
    labels = bundles[0].labels
    for bundle in bundles[1:]:
        if bundle.labels != labels:
            raise EnsembleError(
                f"{bundle.path}: its classes {bundle.labels} differ from {bundles[0].path}'s "
                f"{labels}; an ensemble averages the same classes"
            )
    joined = join([_member(b) for b in bundles])
    size, channels = joined_input(joined)
    meta = BundleMeta(
        name=Path(out).name,
        model={"name": "ensemble", "params": {"members": [str(b.path) for b in bundles]}},
        labels=labels,
        preprocessing=PreprocessSpec(size=size, channels=channels),
        threshold=min(b.threshold for b in bundles),
    )
    model = joined.SerializeToString()
    validation = joined_validation(bundles)
    if validation is not None:
        meta = meta.merged(**validation_records(validation, labels))
    folder = write_bundle(prepare_output_dir(out), meta, model)
    if validation is not None:
        write_validation(folder, validation, model)
    return folder


def joined_validation(bundles) -> ValidationSet | None:
    """The ensemble's validation set: the mean of its members' validation outputs, where
    every member holds one and all were validated on the same images (the same training
    set, seed and validation share); None otherwise.

    Members that read the size the ensemble reads give exactly what the ensemble gives; a
    smaller member sees the ensemble's input resized once more (see the module notes).
    """
    from foramflow.bundle.validation import ValidationSet, read_validation

    sets = [read_validation(b) for b in bundles]
    if any(v is None for v in sets):
        return None
    splits = {_split_of(b) for b in bundles}
    if len(splits) != 1 or None in splits:
        return None
    if any(not np.array_equal(v.labels, sets[0].labels) for v in sets[1:]):
        return None
    mean = np.mean([v.probabilities for v in sets], axis=0)
    return ValidationSet(labels=sets[0].labels, probabilities=mean)


def _split_of(bundle) -> tuple | None:
    """What decides a run's validation split, as its bundle records it; None if unknown."""
    meta = bundle.meta
    if meta.training_set is None or meta.training is None or not meta.training_set.hash:
        return None
    return meta.training_set.hash, meta.training.seed, meta.training.val_fraction


def validation_records(validation: ValidationSet, labels: list[str]) -> dict:
    """The model.json entries a bundle's validation set gives: metrics, the confusion
    matrix and the temperature fitted on it."""
    from foramflow.bundle.schema import ValidationConfusion
    from foramflow.evaluate.calibration import validation_calibration
    from foramflow.evaluate.metrics import classification_metrics, confusion

    predicted = validation.probabilities.argmax(axis=1)
    return {
        "metrics": classification_metrics(validation.labels, predicted, labels),
        "validation_confusion": ValidationConfusion(
            labels=labels, matrix=confusion(validation.labels, predicted, len(labels)).tolist()
        ),
        "calibration": validation_calibration(validation.probabilities, validation.labels),
    }


def joined_input(model: onnx.ModelProto) -> tuple[int, int]:
    """(size, channels) of a joined model's input."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return dims[2].dim_value, dims[1].dim_value


def _refuse_out_over_members(out: Path, members: list[Path]) -> None:
    """The ensemble is written to a new place: never over a member, into one, or around one."""
    target = out.resolve()
    for member in members:
        for place in dict.fromkeys((_bundle_folder(member).resolve(), member.resolve())):
            if target == place:
                where = "is"
            elif target.is_relative_to(place):
                where = "is inside"
            elif place.is_relative_to(target):
                where = "holds"
            else:
                continue
            raise EnsembleError(
                f"{out}: {where} {place}, a member of the ensemble; write the ensemble to "
                "another folder"
            )


def _member(bundle) -> Member:
    """A member's network, refused by name unless it is a valid ONNX model that gives finite
    probabilities on a few test images."""
    from google.protobuf.message import DecodeError

    where = bundle.location()
    try:
        model = onnx.load_from_string(bundle.read_model())
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise EnsembleError(f"{where}: not a valid ONNX model ({reason})") from None
    if not model.graph.input or not model.graph.output or not model.opset_import:
        raise EnsembleError(f"{where}: not a network (no input, output or operator set)")
    member = Member(model, bundle.input_size, bundle.spec.channels)
    outputs = _test_outputs(member, where)
    if not np.isfinite(outputs).all():
        raise EnsembleError(
            f"{where}: gives NaN or infinite probabilities; it cannot join an ensemble"
        )
    return member


def _test_outputs(member: Member, where: str) -> np.ndarray:
    """The member's outputs on dark, mid-grey, bright and noisy images of its input size."""
    import onnxruntime as ort

    shape = (1, member.channels, member.size, member.size)
    noise = np.random.default_rng(0).random(shape, dtype=np.float32)
    images = np.concatenate([np.full(shape, v, np.float32) for v in (0.0, 0.5, 1.0)] + [noise])
    try:
        session = ort.InferenceSession(
            member.model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        return np.asarray(session.run(None, {name: images})[0], dtype=np.float64)
    except Exception as err:  # ONNX Runtime's errors share no base class of their own
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise EnsembleError(f"{where}: does not run on its own input ({reason})") from None


def _bundle_folder(path: Path) -> Path:
    """A run folder stands for the bundle inside it."""
    return path / RUN_BUNDLE if (path / RUN_BUNDLE).is_dir() else path
