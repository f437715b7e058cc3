"""model.nhwc.onnx: the bundle's network in the form ParticleTrieur and MISO run.

ParticleTrieur 3.0.5 runs a network in ONNX Runtime 1.12, which reads IR version 8 and
opset 17 at most, and feeds it a batch as OpenCV holds images: (N, H, W, C), values in
[0, 1]. MISO's readers run ONNX Runtime 1.17 (IR 9 at most). model.onnx, which foramflow
runs, comes from PyTorch's exporter at a newer IR and opset and reads (N, C, H, W). This
copy is lowered by ONNX's version converter and reads (N, H, W, C) through a leading
transpose; its probabilities are model.onnx's.
"""

from __future__ import annotations

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import defs, helper, numpy_helper, version_converter

from foramflow.bundle.schema import BundleError

MAX_IR_VERSION = 8  # ONNX Runtime 1.12
MAX_OPSET = 17  # ONNX Runtime 1.12
_DEFAULT_DOMAINS = ("", "ai.onnx")
_ASIDE = "foramflow.aside"  # nodes the version converter must leave alone


class NhwcError(BundleError):
    """A network that cannot be given the form ParticleTrieur runs; the message says why."""


def nhwc_model(model_bytes: bytes) -> bytes:
    """The network ``model_bytes`` (an (N, C, H, W) model.onnx) lowered to IR 8 and opset
    17, reading (N, H, W, C)."""
    try:
        model = onnx.load_from_string(model_bytes)
    except DecodeError as err:
        raise NhwcError(f"not an ONNX model ({err})") from None
    try:
        model = _reading_nhwc(_lowered(model))
        onnx.checker.check_model(model, full_check=True)
    except (
        RuntimeError,
        ValueError,
        IndexError,
        defs.SchemaError,
        onnx.checker.ValidationError,
        onnx.shape_inference.InferenceError,
    ) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NhwcError(f"cannot lower the network to opset {MAX_OPSET} ({first_line})") from None
    return model.SerializeToString()


def opset_of(model: onnx.ModelProto) -> int:
    """The version of the default ONNX operator set the model imports."""
    versions = [o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS]
    return max(versions, default=0)


def _lowered(model: onnx.ModelProto) -> onnx.ModelProto:
    others = sorted({o.domain for o in model.opset_import} - set(_DEFAULT_DOMAINS))
    if others:
        raise ValueError(f"operators of the {', '.join(others)} domain")  # → NhwcError above
    if opset_of(model) > MAX_OPSET:
        model = _converted(model)
    opset = opset_of(model)
    for node in model.graph.node:
        _drop_attributes_the_opset_lacks(node, opset)
        _give_gemm_a_bias(node, model.graph)
        node.ClearField("metadata_props")  # IR 10
    model.graph.ClearField("metadata_props")
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    return model


def _converted(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX's version converter has no adapter from Pad 18 to Pad 13, which differ only by
    the ``axes`` input and ``wrap`` mode of the later versions: Pad nodes without them are set
    aside in a domain of their own while the rest is converted."""
    aside = [node for node in model.graph.node if _pad_as_in_opset_13(node)]
    for node in aside:
        node.domain = _ASIDE
    model.opset_import.append(helper.make_opsetid(_ASIDE, 1))
    model = version_converter.convert_version(model, MAX_OPSET)
    for node in model.graph.node:
        if node.domain == _ASIDE:
            node.domain = ""
    kept = [o for o in model.opset_import if o.domain != _ASIDE]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


def _pad_as_in_opset_13(node: onnx.NodeProto) -> bool:
    if node.op_type != "Pad" or node.domain not in _DEFAULT_DOMAINS:
        return False
    axes = len(node.input) > 3 and node.input[3]
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    return not axes and mode in (b"constant", b"reflect", b"edge")


def _drop_attributes_the_opset_lacks(node: onnx.NodeProto, opset: int) -> None:
    """The converter moves a reduction's axes from input to attribute but keeps
    ``noop_with_empty_axes``, which ReduceMean, ReduceMax and others gained only in opset
    18; with axes given it changes nothing, so it is dropped."""
    known = defs.get_schema(node.op_type, opset, node.domain).attributes
    axes = any(a.name == "axes" and a.ints for a in node.attribute)
    kept = [
        a
        for a in node.attribute
        if a.name in known or not (a.name == "noop_with_empty_axes" and (axes or a.i == 0))
    ]
    if len(kept) != len(node.attribute):
        del node.attribute[:]
        node.attribute.extend(kept)


def _give_gemm_a_bias(node: onnx.NodeProto, graph: onnx.GraphProto) -> None:
    """ONNX Runtime 1.12 fuses Gemm and Relu into a FusedGemm that refuses a Gemm without its
    (optional) bias; a zero bias gives it one."""
    if node.op_type != "Gemm" or len(node.input) != 2:
        return
    zero = f"{node.output[0]}_zero_bias"
    graph.initializer.append(numpy_helper.from_array(np.zeros([1], np.float32), zero))
    node.input.append(zero)


def _reading_nhwc(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    image = graph.input[0]
    batch, channels, height, width = (
        d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim
    )
    nchw = f"{image.name}_nchw"
    for node in graph.node:
        node.input[:] = [nchw if name == image.name else name for name in node.input]
    transpose = helper.make_node(
        "Transpose", [image.name], [nchw], name="nhwc_to_nchw", perm=[0, 3, 1, 2]
    )
    nhwc_input = helper.make_tensor_value_info(
        image.name, image.type.tensor_type.elem_type, [batch, height, width, channels]
    )
    lowered = helper.make_graph(
        [transpose, *graph.node],
        graph.name,
        [nhwc_input, *graph.input[1:]],
        list(graph.output),
        initializer=list(graph.initializer),
        value_info=list(graph.value_info),
    )
    return helper.make_model(
        lowered,
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
        producer_name="foramflow",
    )
