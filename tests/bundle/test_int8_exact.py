"""The probe that tells whether this CPU computes int8 products of full-range weights
exactly: its answers are known, and a CPU that adds products in pairs into 16 bits fails it."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from foramflow.bundle.int8_exact import (
    CHANNELS,
    KERNEL,
    OUTPUT_SCALE,
    OUTPUTS,
    SIDE,
    exact_answers,
    int8_exact,
    probe_model,
)


def run_probe(optimized: bool) -> list[np.ndarray]:
    options = ort.SessionOptions()
    if not optimized:  # the reference: quantise, dequantise and convolve in float
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe_model(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.ones((1, CHANNELS, SIDE, SIDE), np.float32)})


def test_the_probes_exact_answers_are_64_and_9():
    pointwise, depthwise = run_probe(optimized=False)
    assert pointwise.shape == (1, OUTPUTS, SIDE, SIDE)
    np.testing.assert_array_equal(pointwise, CHANNELS)
    np.testing.assert_array_equal(depthwise, KERNEL * KERNEL)
    assert exact_answers(pointwise, depthwise)


def test_a_cpu_that_adds_products_in_pairs_into_16_bits_fails_it():
    """Each pair of 255 · 127 products clamps at 32 767: the 64 channels give about half."""
    pair = min(2 * 255 * 127, 2**15 - 1)
    clamped = (CHANNELS // 2) * pair / (255 * 127)
    pointwise = np.full((1, OUTPUTS, SIDE, SIDE), round(clamped / OUTPUT_SCALE) * OUTPUT_SCALE)
    depthwise = np.full((1, CHANNELS, SIDE - KERNEL + 1, SIDE - KERNEL + 1), 9.0)
    assert not exact_answers(pointwise, depthwise)


def test_the_verdict_is_that_of_the_int8_kernels_here():
    assert int8_exact() == exact_answers(*run_probe(optimized=True))
