"""Whether ONNX Runtime on this CPU computes int8 products of full-range weights exactly.

x86 CPUs without VNNI (AVX2, and AVX-512 before it gained VNNI: many laptops, many AMD
processors before Zen 4, Intel before 2019) multiply uint8 activations by int8 weights with
an instruction that adds the products in pairs into 16 bits: 255 · 127 · 2 overflows and is
clamped. CPUs with VNNI (or AMX), and ARM's, add into 32 bits. An int8 copy with 8-bit
weights is therefore exact on some CPUs and wrong on others; one with 7-bit weights is exact
on all, and less accurate.

Rather than read the CPU's flags, :func:`int8_exact` runs a two-layer network built to
overflow where products are added in pairs (every activation and weight at the top of its
range, 64 channels) and compares its answer with the exact one, once per process.
"""

from __future__ import annotations

import functools

import numpy as np

CHANNELS = 64  # the pointwise layer's inputs: 32 pairs, each of which overflows 16 bits
OUTPUTS = 16  # the pointwise layer's outputs: a matrix product, as in a network
SIDE = 8
KERNEL = 3  # the depthwise layer's kernel, the other way ONNX Runtime computes int8
OUTPUT_SCALE = 0.5  # each exact output, 64 or 9, lies in uint8's range at this scale


def probe_model() -> bytes:
    """A QDQ network, all activations 1.0 (uint8 255) and weights 1.0 (int8 127): a 1×1
    convolution of 64 channels (exact answer 64) and a 3×3 depthwise one (exact answer 9)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def quantized_weight(name: str, shape: tuple[int, ...]) -> list:
        return [
            numpy_helper.from_array(np.full(shape, 127, np.int8), f"{name}_q"),
            numpy_helper.from_array(np.full(shape[0], 1 / 127, np.float32), f"{name}_scale"),
            numpy_helper.from_array(np.zeros(shape[0], np.int8), f"{name}_zero"),
        ]

    initializers = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zero"),
        numpy_helper.from_array(np.array(OUTPUT_SCALE, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "y_zero"),
        *quantized_weight("pointwise", (OUTPUTS, CHANNELS, 1, 1)),
        *quantized_weight("depthwise", (CHANNELS, 1, KERNEL, KERNEL)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
    ]
    for name, group in (("pointwise", 1), ("depthwise", CHANNELS)):
        nodes += [
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_q", f"{name}_scale", f"{name}_zero"],
                [f"{name}_w"],
                axis=0,
            ),
            helper.make_node("Conv", ["x_dq", f"{name}_w"], [f"{name}_y"], group=group),
            helper.make_node("QuantizeLinear", [f"{name}_y", "y_scale", "y_zero"], [f"{name}_yq"]),
            helper.make_node(
                "DequantizeLinear", [f"{name}_yq", "y_scale", "y_zero"], [f"{name}_out"]
            ),
        ]
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, SIDE, SIDE])
    valid = SIDE - KERNEL + 1
    outputs = [
        helper.make_tensor_value_info("pointwise_out", TensorProto.FLOAT, [1, OUTPUTS, SIDE, SIDE]),
        helper.make_tensor_value_info(
            "depthwise_out", TensorProto.FLOAT, [1, CHANNELS, valid, valid]
        ),
    ]
    graph = helper.make_graph(nodes, "int8_overflow_probe", [image], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def exact_answers(pointwise: np.ndarray, depthwise: np.ndarray) -> bool:
    """Whether the probe's outputs are the exact ones: 64 and 9 everywhere."""
    return bool(
        np.allclose(pointwise, CHANNELS, atol=OUTPUT_SCALE)
        and np.allclose(depthwise, KERNEL * KERNEL, atol=OUTPUT_SCALE)
    )


@functools.cache
def int8_exact() -> bool:
    """True where ONNX Runtime here computes int8 products of full-range weights exactly
    (see the module's description); False where they overflow or the probe cannot run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(probe_model(), options, providers=["CPUExecutionProvider"])
        ones = np.ones((1, CHANNELS, SIDE, SIDE), np.float32)
        pointwise, depthwise = session.run(None, {"x": ones})
    except Exception:  # ONNX Runtime's errors share no base class of their own
        return False
    return exact_answers(pointwise, depthwise)
