"""One error policy: an error a user can cause is a ForamflowError; a bare ValueError is
raised only where something else catches it or where it guards a programming error."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import foramflow.errors
from foramflow.classify.runner import RunMismatchError
from foramflow.classify.samples import SampleError
from foramflow.errors import ForamflowError
from foramflow.evaluate.calibration import CalibrationError
from foramflow.label.store import PathRefused

SRC = Path(__file__).resolve().parents[1] / "src" / "foramflow"
#: Modules allowed to raise a bare ValueError, and why.
ALLOWED = {
    "bundle/schema.py": "pydantic validators; parse_meta reports a BundleError",
    "bundle/nhwc.py": "caught in nhwc_model, reported as an NhwcError",
    "bundle/validation.py": "a caller's mismatched arrays; files are checked when read",
    "io/particletrieur.py": "caught per image, reported as a ProjectError naming the file",
    "io/images.py": "caught in _read_tiff, which tries Pillow, then names the file",
    "abundance/intervals.py": "counts that callers computed",
    "models/registry.py": "a model registered twice, by code",
    "models/fused_paths.py": "checked beforehand by can_fuse_paths",
    "data/synthetic/files.py": "label images the generator itself draws",
    "training/config.py": "pydantic validators; TrainConfig.load reports the file",
    "training/fit.py": "settings that TrainConfig has already checked",
    "training/trainer.py": "a trainer given 'auto' before resolve_auto, by code",
    "training/feature_cache.py": "vectors of the wrong shape handed over by code",
}


def raises_of_value_error(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id == "ValueError":
                lines.append(node.lineno)
    return sorted(lines)


def test_no_module_raises_a_bare_value_error_unless_allowed():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in ALLOWED:
            continue
        found += [f"{name}:{line}" for line in raises_of_value_error(path)]
    assert found == []


def test_the_check_sees_a_bare_value_error(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "def f(x):\n    if x:\n        raise ValueError('no')\n    raise ValueError\n"
    )
    assert raises_of_value_error(source) == [3, 4]


def test_every_allowed_module_still_raises_one():
    stale = [name for name in ALLOWED if not raises_of_value_error(SRC / name)]
    assert stale == []


def test_every_error_class_a_user_can_cause_is_a_foramflow_error():
    user_errors = [CalibrationError, SampleError, RunMismatchError, PathRefused]
    user_errors += [
        cls
        for _, cls in inspect.getmembers(foramflow.errors, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == "foramflow.errors"
    ]
    assert [e.__name__ for e in user_errors if not issubclass(e, ForamflowError)] == []
