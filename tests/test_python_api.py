"""The library's faces: ``import foramflow`` is light and names every step, and no module
outside the command line imports the terminal libraries."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import foramflow

STEPS = [
    "calibrate_bundle",
    "classify_folder",
    "estimate_abundance",
    "evaluate_folder",
    "segment_folder",
    "stack_folder",
    "train",
]
PACKAGE = Path(foramflow.__file__).parent


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_foramflow_loads_no_heavy_library():
    loaded = run_python(
        "import sys, foramflow\n"
        "print(sorted({'numpy', 'pandas', 'torch', 'typer'} & set(sys.modules)))"
    )
    assert loaded.strip() == "[]"


def test_every_step_is_named_by_the_package():
    assert sorted(foramflow.__all__) == STEPS
    shown = run_python(
        f"from foramflow import {', '.join(STEPS)}\n"
        "import sys\n"
        f"print(all(callable(f) for f in ({', '.join(STEPS)},)), 'torch' in sys.modules)"
    )
    assert shown.strip() == "True False"


def test_train_is_the_step_also_after_its_modules_are_imported():
    shown = run_python(
        "import foramflow, foramflow.training.config, foramflow.training.step\n"
        "from foramflow import train\n"
        "from foramflow.training import train as step\n"
        "import inspect\n"
        "print(inspect.isfunction(train), train is foramflow.train is step, step.__module__)"
    )
    assert shown.split() == ["True", "True", "foramflow.training.step"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_library_module_imports_typer_or_rich():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] in ("typer", "rich")
        )
        for path in PACKAGE.rglob("*.py")
        if "cli" not in path.relative_to(PACKAGE).parts
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_demo_composes_the_library_steps_not_the_commands():
    imported = imported_modules(PACKAGE / "demo" / "pipeline.py")
    assert not [name for name in imported if name.startswith("foramflow.cli")]
    assert {
        "foramflow.imaging.steps",
        "foramflow.training.step",
        "foramflow.classify.runner",
        "foramflow.abundance.steps",
    } <= imported


def test_openmp_threads_wait_passively_unless_the_user_says_otherwise():
    """Spinning OpenMP threads hold cores another program needs (benchmarks/bench_busy.py)."""
    show = "import foramflow, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    default = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True)
    assert default.stdout.strip() == "PASSIVE", default.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    kept = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True)
    assert kept.stdout.strip() == "ACTIVE", kept.stderr
