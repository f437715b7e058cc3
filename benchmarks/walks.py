"""Two parameters followed through the code, as a newcomer reading it would follow them.

* **bundle**: ``foramflow classify BUNDLE …`` up to the first ONNX Runtime session;
* **model**: ``foramflow train DIR --model NAME …`` up to the fit loop (``fit``).

Each walk runs the real command under a profiler and lists the calls from one foramflow
module into another made on the way (calls inside a module are a reader's single stop). For
the model walk only the calls that carry the model's name (an argument equal to it, or an
argument whose ``model`` or ``name`` attribute is) count, since the path also loads the
images. A call into a module of a higher layer (``tests/test_import_layers.py``) is a climb back up.

    python benchmarks/walks.py [-v]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_import_layers as layers  # noqa: E402


class Walk:
    """Cross-module foramflow calls between a start function and a stop condition."""

    def __init__(self, start: tuple[str, str], stop, carried=None):
        self.start, self.stop, self.carried = start, stop, carried
        self.calls: list[tuple[str, str, str, str]] = []
        self.on = self.done = False

    def __call__(self, frame, event, arg):
        if event != "call" or self.done:
            return
        module, code = frame.f_globals.get("__name__", ""), frame.f_code
        if self.on and self.stop(module, code.co_name, frame):
            self.done = True
            return
        if (module, code.co_name) == self.start:
            self.on = True
        if not self.on or not module.startswith("foramflow") or code.co_name == "<module>":
            return
        if self.carried is not None and not self.carried(frame):
            return
        back = frame.f_back
        while back is not None and not back.f_globals.get("__name__", "").startswith("foramflow"):
            back = back.f_back  # through other libraries' frames (pydantic, typer)
        if back is None or back.f_code.co_name == "<module>":
            return
        caller = back.f_globals["__name__"]
        if caller != module:
            self.calls.append((caller, back.f_code.co_name, module, code.co_name))

    def run(self, invoke) -> None:
        sys.setprofile(self)
        try:
            invoke()
        finally:
            sys.setprofile(None)
        if not self.done:
            raise SystemExit(f"the walk from {self.start} never reached its end")

    def report(self, name: str, verbose: bool) -> dict:
        modules = {m for call in self.calls for m in (call[0], call[2])}
        climbs = [c for c in self.calls if _level(c[2]) > _level(c[0])]
        print(
            f"{name}: {len(self.calls)} cross-module calls in {len(modules)} modules, "
            f"{len(climbs)} climbing up a layer"
        )
        for caller, where, callee, what in self.calls if verbose else climbs:
            mark = "  up " if (caller, where, callee, what) in climbs else "     "
            print(f"{mark}{caller}.{where} -> {callee}.{what}")
        return {"calls": len(self.calls), "modules": len(modules), "climbs": len(climbs)}


def _level(module: str) -> int:
    return layers.LEVEL[layers.package_of(module)]


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from foramflow.cli import app

    def invoke():
        result = CliRunner().invoke(app, args)
        if result.exit_code != 0:
            raise SystemExit(f"foramflow {' '.join(args)}: {result.exception!r}\n{result.output}")

    return invoke


def bundle_walk(work: Path, verbose: bool) -> dict:
    import importlib.util

    spec = importlib.util.spec_from_file_location("kit", ROOT / "tests/classify/conftest.py")
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)  # the classify tests' tiny bundle and per-sample folders
    bundle, images = kit.write_bundle(work / "bundle"), kit.write_tree(work / "images")

    def at_session(module: str, function: str, frame) -> bool:
        owner = type(frame.f_locals.get("self", None)).__name__
        return module.startswith("onnxruntime") and owner == "InferenceSession"

    walk = Walk(("foramflow.cli.classify_commands", "classify"), at_session)
    args = ["classify", str(bundle), str(images), "--out", str(work / "out")]
    walk.run(_invoke([*args, "--precision", "fp32", "--workers", "0"]))
    return walk.report("bundle: `foramflow classify` to its ONNX session", verbose)


def model_walk(work: Path, verbose: bool) -> dict:
    from foramflow.data.synthetic import write_training_set

    images = work / "shapes"
    write_training_set(images, n_per_class=6, image_size=32, seed=0)
    name = "base_cyclic"

    def carries(frame) -> bool:
        code = frame.f_code
        n_args = code.co_argcount + code.co_kwonlyargcount
        for value in (frame.f_locals.get(a) for a in code.co_varnames[:n_args]):
            if isinstance(value, str) and value == name:
                return True
            for attribute in ("model", "name"):  # a configuration, a registry entry
                held = getattr(value, attribute, None)
                if isinstance(held, str) and held == name:
                    return True
        return False

    def at_fit(module: str, function: str, frame) -> bool:
        return (module, function) == ("foramflow.training.fit", "fit")

    walk = Walk(("foramflow.cli.train_commands", "train"), at_fit, carried=carries)
    args = ["train", str(images), "--model", name, "--out", str(work / "run"), "--epochs", "1"]
    walk.run(_invoke([*args, "--input-size", "32", "--workers", "0", "--min-per-class", "2"]))
    return walk.report("model: `--model` from the command line to the fit loop", verbose)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list every call")
    verbose = parser.parse_args().verbose
    with tempfile.TemporaryDirectory() as tmp:
        bundle_walk(Path(tmp) / "bundle", verbose)
        model_walk(Path(tmp) / "model", verbose)


if __name__ == "__main__":
    main()
