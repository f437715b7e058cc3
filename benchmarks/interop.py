"""Round trips between foramflow bundles and the tools that share networks with it:
ParticleTrieur 3.0.5 and MISO 3.1.25, each run as itself where it installs here.

    python benchmarks/interop.py                         # a tiny bundle trained on shapes
    python benchmarks/interop.py --bundle runs/x/bundle --images labelled/

Prints one line per round trip, ``PASS <round trip>: <detail>`` or ``FAIL …``, and exits 1
when one failed. The tools run in Python 3.10 environments made once under --venvs (default
~/.cache/foramflow-interop) from pyenv's Python 3.10.13:

* ``onnxruntime-1.12.1``: the ONNX Runtime ParticleTrieur 3.0.5 pins (its pom.xml), numpy < 2
  and OpenCV, for :mod:`particletrieur_emulation` (ParticleTrieur's classification path);
* ``miso-3.1.25``: ``pip install miso==3.1.25`` (about 3 GB: TensorFlow, ONNX Runtime 1.17).

More round trips: a function ``check_…(ctx) -> detail`` under ``@round_trip(name)``, raising
CheckFailed with the detail of its FAIL line. A module ``interop_labels`` beside this file,
where there is one, adds the lines of its ``checks()`` (a list of (ok, name, detail)).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PYTHON_310 = Path.home() / ".pyenv" / "versions" / "3.10.13" / "bin" / "python"
PT_VENV, PT_PACKAGES = "onnxruntime-1.12.1", ["onnxruntime==1.12.1", "numpy<2",
                                             "opencv-python-headless<4.11"]  # fmt: skip
MISO_VENV, MISO_PACKAGES = "miso-3.1.25", ["miso==3.1.25"]
INSTALLED = ".installed"  # written once a venv's packages are in
PT = "ParticleTrieur 3.0.5's ONNX path"
MISO = "MISO 3.1.25"

Check = tuple[bool, str, str]
#: The round trips: (name, function giving the detail of its PASS line or raising CheckFailed).
CHECKS: list[tuple[str, Callable[[Context], str]]] = []


def round_trip(name: str):
    """Register a check function under the name its lines carry."""

    def register(check: Callable[[Context], str]) -> Callable[[Context], str]:
        CHECKS.append((name, check))
        return check

    return register


class CheckFailed(Exception):
    """A round trip that did not go through; the message is the detail of its FAIL line."""


@dataclass
class Context:
    """What the checks share: the bundle, labelled images, the tools' environments."""

    bundle: Path
    images: list[Path]
    labels: list[str] | None  # the true class of each image, where known
    venvs: Path
    work: Path
    _pythons: dict[str, Path] = field(default_factory=dict)

    def python(self, name: str, packages: list[str]) -> Path:
        """The Python of the venv ``name`` under --venvs, made on first use."""
        if name not in self._pythons:
            self._pythons[name] = make_venv(self.venvs / name, packages)
        return self._pythons[name]

    def run(self, python: Path, *args: str | Path, what: str) -> str:
        """Run ``python args``; its stdout, or CheckFailed with its last error line."""
        done = subprocess.run(
            [str(python), *map(str, args)], capture_output=True, text=True, cwd=self.work
        )
        if done.returncode != 0:
            raise CheckFailed(f"{what} failed: {last_line(done.stderr or done.stdout)}")
        return done.stdout

    def foramflow_batch(self) -> np.ndarray:
        """The images as foramflow preprocesses them, (N, C, S, S)."""
        from foramflow.bundle import Bundle
        from foramflow.bundle.decode import decode_batch

        batch, errors = decode_batch(self.images, Bundle.load(self.bundle).spec)
        if any(errors):
            raise CheckFailed(f"foramflow cannot read {sum(map(bool, errors))} of the images")
        return batch

    def model_onnx_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """model.onnx's probabilities (as exported, without the bundle's calibration)."""
        import onnxruntime as ort

        from foramflow.bundle import Bundle

        session = ort.InferenceSession(Bundle.load(self.bundle).read_model())
        return session.run(None, {session.get_inputs()[0].name: batch})[0]


def last_line(text: str, width: int = 240) -> str:
    """The last line of a tool's output, its end where it is long (errors end with the cause)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "no output"
    return lines[-1] if len(lines[-1]) <= width else "…" + lines[-1][-width:]


def make_venv(folder: Path, packages: list[str]) -> Path:
    """A Python 3.10 venv at ``folder`` holding ``packages``, made once."""
    python = folder / "bin" / "python"
    if (folder / INSTALLED).is_file():
        return python
    if not PYTHON_310.is_file():
        raise CheckFailed(f"no Python 3.10 at {PYTHON_310} to make {folder}")
    print(f"making {folder}: pip install {' '.join(packages)} …", file=sys.stderr, flush=True)
    for command in (
        [str(PYTHON_310), "-m", "venv", str(folder)],
        [str(python), "-m", "pip", "install", "-q", *packages],
    ):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise CheckFailed(f"cannot make {folder}: {last_line(done.stderr)}")
    (folder / INSTALLED).write_text(" ".join(packages) + "\n")
    return python


def named_network(ctx: Context) -> tuple[Path, Path]:
    """The bundle's network_info.xml and the network file its <protobuf> names."""
    import xml.etree.ElementTree as ET

    xml = ctx.bundle / "network_info.xml"
    if not xml.is_file():
        raise CheckFailed(f"{ctx.bundle} has no network_info.xml")
    model = ctx.bundle / (ET.parse(xml).getroot().findtext("protobuf") or "")
    if not model.is_file():
        raise CheckFailed(f"{xml} names {model.name}, which is not beside it")
    return xml, model


def compare(got: np.ndarray, expected: np.ndarray) -> str:
    """Detail of probabilities that agree with model.onnx's; CheckFailed where not."""
    if got.shape != expected.shape:
        raise CheckFailed(f"probabilities of shape {got.shape}, not {expected.shape}")
    diff = float(np.abs(got - expected).max())
    same = float((got.argmax(1) == expected.argmax(1)).mean())
    if diff > 1e-4 or same < 1:
        raise CheckFailed(f"max |Δp| {diff:.1e} from model.onnx, same top class {same:.1%}")
    return f"max |Δp| {diff:.1e} from model.onnx, same top class for all {len(got)} images"


@round_trip(f"{PT} (onnxruntime 1.12.1) runs network_info.xml's network")
def check_particletrieur_runs_the_bundle(ctx: Context) -> str:
    xml, model = named_network(ctx)
    batch = ctx.foramflow_batch()
    np.save(ctx.work / "nhwc.npy", batch.transpose(0, 2, 3, 1))
    python = ctx.python(PT_VENV, PT_PACKAGES)
    emulation = HERE / "particletrieur_emulation.py"
    said = ctx.run(python, emulation, xml, "--batch", "nhwc.npy", "--out", "pt.npy",
                   what="ParticleTrieur's classify")  # fmt: skip
    got = np.load(ctx.work / "pt.npy")
    detail = compare(got, ctx.model_onnx_probabilities(batch))
    return f"{model.name} ({last_line(said)}): {detail}"


MISO_READ = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from miso.deploy.model_info import ModelInfo
    from miso.deploy.saving import load_onnx_from_xml
    import onnxruntime
    info = ModelInfo.from_xml(sys.argv[1])
    session, img_size, img_type, labels = load_onnx_from_xml(sys.argv[2])
    batch = np.load(sys.argv[3])
    probabilities = session.run(None, {session.get_inputs()[0].name: batch})[0]
    np.save(sys.argv[4], probabilities)
    print(json.dumps(dict(
        date=str(info.date), protobuf=info.protobuf, labels=info.labels,
        inputs=info.inputs, img_size=[int(v) for v in img_size], img_type=img_type,
        loaded_labels=labels, onnxruntime=onnxruntime.__version__)))
    """
)


@round_trip(f"{MISO} ModelInfo.from_xml and load_onnx_from_xml read the bundle")
def check_miso_reads_the_bundle(ctx: Context) -> str:
    """ModelInfo.from_xml reads the bundle's network_info.xml; load_onnx_from_xml opens the
    first *.onnx of the XML's folder (not <protobuf>), so it is given a folder holding
    network_info.xml and model.nhwc.onnx alone."""
    from foramflow.bundle import Bundle

    bundle = Bundle.load(ctx.bundle)
    xml, model = named_network(ctx)
    alone = ctx.work / "miso_view"
    alone.mkdir(exist_ok=True)
    shutil.copy2(xml, alone / xml.name)
    shutil.copy2(model, alone / model.name)
    batch = ctx.foramflow_batch()
    np.save(ctx.work / "nhwc.npy", batch.transpose(0, 2, 3, 1))
    (ctx.work / "miso_read.py").write_text(MISO_READ)
    python = ctx.python(MISO_VENV, MISO_PACKAGES)
    said = ctx.run(python, "miso_read.py", xml, alone / xml.name, "nhwc.npy", "miso.npy",
                   what="MISO's readers")  # fmt: skip
    read = json.loads(said.strip().splitlines()[-1])
    size, channels = bundle.input_size, bundle.spec.channels
    expected_type = "k" if channels == 1 else "rgb"
    problems = [
        f"labels {read['labels']}" * (read["labels"] != bundle.labels),
        f"loaded labels {read['loaded_labels']}" * (read["loaded_labels"] != bundle.labels),
        f"img_size {read['img_size']}" * (read["img_size"] != [size, size, channels]),
        f"img_type {read['img_type']}" * (read["img_type"] != expected_type),
        f"protobuf {read['protobuf']}" * (read["protobuf"] != model.name),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise CheckFailed("read " + ", ".join(problems))
    detail = compare(np.load(ctx.work / "miso.npy"), ctx.model_onnx_probabilities(batch))
    return (
        f"date {read['date']}, img_size {read['img_size']}, img_type {read['img_type']}, "
        f"{len(read['labels'])} labels; onnxruntime {read['onnxruntime']}: {detail}"
    )


MISO_WRITE = textwrap.dedent(
    """
    import sys, datetime
    from collections import OrderedDict
    from types import SimpleNamespace
    from miso.deploy.model_info import ModelInfo
    size, channels, labels = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
    k = len(labels)
    image = SimpleNamespace(name="input_1", shape=(None, size, size, channels))
    pred = SimpleNamespace(name="dense_1/Softmax:0", shape=(None, k))
    ModelInfo("base_cyclic", "a MISO network", "base_cyclic", datetime.datetime.now(),
              "model.onnx", None, OrderedDict(image=image), OrderedDict(pred=pred),
              "images", labels, [10] * k, "rescale", [255, 0, 1], 0.9, [0.9] * k, [0.9] * k,
              [0.9] * k, [2] * k, 5, 60.0, 0.2, 0.01).save(sys.argv[1])
    """
)


@round_trip(f"a network saved by {MISO}'s ModelInfo given to foramflow classify")
def check_foramflow_refuses_a_miso_network(ctx: Context) -> str:
    from foramflow.bundle import Bundle

    bundle = Bundle.load(ctx.bundle)
    folder = ctx.work / "miso_run" / "model_onnx"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(named_network(ctx)[1], folder / "model.onnx")
    (ctx.work / "miso_write.py").write_text(MISO_WRITE)
    python = ctx.python(MISO_VENV, MISO_PACKAGES)
    labels = ",".join(bundle.labels)
    ctx.run(python, "miso_write.py", folder / "network_info.xml", bundle.input_size,
            bundle.spec.channels, labels, what="MISO's ModelInfo.save")  # fmt: skip
    images = ctx.images[0].parent
    command = [*foramflow_command(), "classify", str(folder), str(images),
               "--out", str(ctx.work / "classified")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode == 0 or len(lines) != 1 or not lines[0].startswith("error: "):
        raise CheckFailed(f"exit {done.returncode}, {len(lines)} lines: {last_line(done.stderr)}")
    if "MISO or ParticleTrieur network" not in lines[0]:
        raise CheckFailed(f"the line does not say what the folder is: {lines[0]}")
    return lines[0]


def foramflow_command() -> list[str]:
    """The foramflow command of the Python running this script."""
    script = Path(sys.executable).parent / "foramflow"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "foramflow.cli"]


@round_trip(f"{PT}: its own preprocessing against foramflow's (measured)")
def check_particletrieur_preprocessing(ctx: Context) -> str:
    """Top-1 of the bundle's classes with ParticleTrieur's preprocessing (OpenCV: 8-bit grey,
    bilinear without antialiasing) against foramflow's own, on the same labelled images."""
    if ctx.labels is None:
        raise CheckFailed("no labelled images (--images DIR, a folder per class)")
    from foramflow.bundle import Bundle

    bundle = Bundle.load(ctx.bundle)
    xml, _ = named_network(ctx)
    (ctx.work / "paths.txt").write_text("".join(f"{p.resolve()}\n" for p in ctx.images))
    python = ctx.python(PT_VENV, PT_PACKAGES)
    ctx.run(python, HERE / "particletrieur_emulation.py", xml, "--images", "paths.txt",
            "--out", "pt_images.npy", what="ParticleTrieur's preprocessing")  # fmt: skip
    pt = np.load(ctx.work / "pt_images.npy").argmax(1)
    ours = ctx.model_onnx_probabilities(ctx.foramflow_batch()).argmax(1)
    known = np.array([label in bundle.labels for label in ctx.labels])
    truth = np.array([bundle.labels.index(x) if x in bundle.labels else -1 for x in ctx.labels])
    if not known.any():
        raise CheckFailed(f"none of the image classes is one of the bundle's {bundle.labels}")
    top1_pt = float((pt == truth)[known].mean())
    top1_ours = float((ours == truth)[known].mean())
    agree = float((pt == ours).mean())
    return (
        f"top-1 {top1_pt:.1%} with ParticleTrieur's, {top1_ours:.1%} with foramflow's "
        f"({top1_pt - top1_ours:+.1%}) on {int(known.sum())} images of "
        f"{bundle.input_size} px; same top class for {agree:.1%}"
    )


def run_checks(ctx: Context) -> list[Check]:
    results = []
    for name, check in CHECKS:
        try:
            results.append((True, name, check(ctx)))
        except CheckFailed as err:
            results.append((False, name, str(err)))
        print(line(results[-1]), flush=True)
    return results


def other_checks(ecotaxa_src: Path | None) -> list[Check]:
    """The lines of interop_labels.checks(), where that module is beside this one."""
    sys.path.insert(0, str(HERE))
    try:
        import interop_labels
    except ModuleNotFoundError as err:
        if err.name == "interop_labels":
            return []
        raise
    results = list(interop_labels.checks(ecotaxa_src))
    for result in results:
        print(line(result), flush=True)
    return results


def line(result: Check) -> str:
    return f"{verdict(result)} {result[1]}: {result[2]}"


def verdict(result: Check) -> str:
    ok, _, detail = result
    if ok and detail.startswith("skipped"):
        return "SKIP"
    return "PASS" if ok else "FAIL"


def tiny_bundle(work: Path) -> tuple[Path, Path]:
    """A bundle trained for two epochs on generated shapes, and its images."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from foramflow.training.step import train
    from image_sets import write_shape_set

    data = write_shape_set(work / "shapes", n_per_class=12, size=24)
    out = work / "tiny_run"
    print("training a tiny bundle …", file=sys.stderr, flush=True)
    train(
        data, out, model="base_cyclic", input_size=16, epochs=2, batch_size=8,
        min_per_class=5, seed=0, workers=1,
    )  # fmt: skip
    return out / "bundle", data


def labelled_images(root: Path) -> tuple[list[Path], list[str]]:
    """Images of a folder per class (hidden folders skipped), sorted, and their classes."""
    images, labels = [], []
    suffixes = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in suffixes:
                images.append(path)
                labels.append(folder.name)
    return images, labels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a bundle folder (default: train a tiny one)")
    parser.add_argument("--images", type=Path, help="labelled images, a folder per class")
    parser.add_argument("--venvs", type=Path, default=Path.home() / ".cache" / "foramflow-interop")
    parser.add_argument("--work", type=Path, help="keep the files made here (default: temporary)")
    parser.add_argument("--ecotaxa-src", type=Path, help="an ecotaxa_back checkout")
    parser.add_argument("--save", metavar="NAME", help="also write benchmarks/results/NAME.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="foramflow-interop-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        bundle, images = args.bundle, args.images
        if bundle is None:
            bundle, shapes = tiny_bundle(work)
            images = images or shapes
        if images is None:
            raise SystemExit("give --images (a folder per class) with --bundle")
        paths, labels = labelled_images(images)
        if not paths:
            raise SystemExit(f"{images}: no images in a folder per class")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
        ctx = Context(bundle=bundle.resolve(), images=paths, labels=labels,
                      venvs=args.venvs, work=work)  # fmt: skip
        results = run_checks(ctx) + other_checks(args.ecotaxa_src)
    if args.save:
        from saved_results import save_result

        path = save_result(
            args.save,
            title="Round trips with the real tools",
            columns=["", "round trip", "what the tool said"],
            rows=[[verdict(result), result[1], result[2]] for result in results],
            notes=f"The tools: {PT} (onnxruntime 1.12.1), {MISO} (its own readers and "
            "onnxruntime), and EcoTaxa's import code (ecotaxa_back) run without its database.",
        )
        print(f"saved: {path}")
    return 0 if all(ok for ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
