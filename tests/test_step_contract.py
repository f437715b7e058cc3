"""Every public step is called the same way: ``step(inputs, out, *, options…, progress=None)``
returning a result class, the same thing named the same in every step."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

import foramflow

#: What a step's inputs may be called, and what each name means.
INPUT_NAMES = {
    "images": "a folder of images, or a labelled image set",
    "bundle": "a model bundle",
    "results": "a classify results folder",
    "stacks": "a folder of Z-stacks",
}
STEPS = sorted(foramflow.__all__)


def step(name: str):
    function = getattr(foramflow, name)
    return function, inspect.signature(function)


def test_the_steps_checked_are_the_packages_steps():
    assert STEPS == [
        "calibrate_bundle",
        "classify_folder",
        "estimate_abundance",
        "evaluate_folder",
        "segment_folder",
        "stack_folder",
        "train",
    ]


@pytest.mark.parametrize("name", STEPS)
def test_inputs_then_out_come_first_and_positional(name):
    _, signature = step(name)
    positional = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    assert positional[-1] == "out", f"{name}: the last positional parameter is not out"
    inputs = positional[:-1]
    assert inputs, f"{name}: no input before out"
    unknown = [p for p in inputs if p not in INPUT_NAMES]
    assert not unknown, f"{name}: inputs {unknown} are not among {sorted(INPUT_NAMES)}"


@pytest.mark.parametrize("name", STEPS)
def test_every_option_is_keyword_only(name):
    _, signature = step(name)
    parameters = list(signature.parameters.values())
    first_keyword = next(i for i, p in enumerate(parameters) if p.name == "out") + 1
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
    loose = [p.name for p in parameters[first_keyword:] if p.kind not in keyword]
    assert not loose, f"{name}: options {loose} are not keyword-only"


@pytest.mark.parametrize("name", STEPS)
def test_progress_is_a_keyword_that_defaults_to_none(name):
    _, signature = step(name)
    progress = signature.parameters.get("progress")
    assert progress is not None, f"{name}: no progress parameter"
    assert progress.kind is progress.KEYWORD_ONLY and progress.default is None
    callbacks = [p for p in signature.parameters if p == "log" or p.startswith("on_")]
    assert not callbacks, f"{name}: callbacks {callbacks} beside progress"


@pytest.mark.parametrize("name", STEPS)
def test_the_result_is_a_result_class(name):
    function, signature = step(name)
    annotation = signature.return_annotation
    assert annotation is not signature.empty, f"{name}: no return annotation"
    module = importlib.import_module(function.__module__)
    result = eval(annotation, vars(module)) if isinstance(annotation, str) else annotation
    assert inspect.isclass(result) and dataclasses.is_dataclass(result), (
        f"{name}: returns {annotation}, not a result dataclass"
    )
    assert result.__name__.endswith("Result"), f"{name}: returns {result.__name__}"
