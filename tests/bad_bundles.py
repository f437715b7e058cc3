"""The bad-bundle corpus: hostile bundles, validation sets, run.json and human counts.

:func:`make_bad_bundles` writes a good three-class bundle (the abundance tests' brightness
network, 8 × 8 grey input), labelled images for it, a classify results folder, and beside
them the files that once took gigabytes or gave tracebacks or blank results:

- ``bomb.zip``: a zipped bundle of about a megabyte holding a true 1 GiB ``model.onnx``;
- ``two_json.zip``: a zipped bundle holding ``model.json`` twice;
- ``deep_json/``: a bundle whose ``model.json`` is nested 100 000 deep;
- ``validation_*/``: bundles whose ``validation.npz`` claims fifty million rows (honestly,
  in about a megabyte), or holds a NaN, an infinity, one class, or no rows;
- ``results_bad_run_json/``: classify results whose ``run.json`` is cut short;
- ``human_1e308.csv``: human counts of 1e308.

:func:`cases` says what each command must do with each: refuse it in one line naming the
file (exit 1 or 2, ``error:``), or go on and say which file it set aside (exit 0).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bombs import npz_bomb, zip_bytes

REFUSED, WARNED = "refused", "warned"
BUNDLE_COMMANDS = ("predict", "evaluate", "calibrate", "classify", "ensemble", "abundance")
HOSTILE_BUNDLES = ("bomb.zip", "two_json.zip", "deep_json")
BAD_VALIDATIONS = ("bomb", "nan", "inf", "one_class", "empty")


#: The cases a quick test run takes: every command and every hostile file at least once.
QUICK = frozenset(
    {
        "predict bomb.zip", "classify bomb.zip", "abundance bomb.zip",
        "evaluate two_json.zip", "ensemble two_json.zip",
        "calibrate deep_json", "predict deep_json",
        *(f"abundance validation_{kind}" for kind in BAD_VALIDATIONS),
        "ensemble validation_nan",
        "calibrate good.zip", "abundance results_bad_run_json", "abundance human_1e308.csv",
    }
)  # fmt: skip


def case_names() -> list[str]:
    """The names of the cases of :func:`make_bad_bundles`, without writing anything."""
    return [
        *(f"{command} {hostile}" for hostile in HOSTILE_BUNDLES for command in BUNDLE_COMMANDS),
        *(
            f"{command} validation_{kind}"
            for kind in BAD_VALIDATIONS
            for command in ("abundance", "ensemble")
        ),
        "calibrate good.zip",
        "abundance results_bad_run_json",
        "abundance human_1e308.csv",
    ]


@dataclass(frozen=True)
class Case:
    """One command on one hostile file: what it must say, and the file it must name."""

    name: str
    command: str
    args: list[str]
    names: str  # the file (path as the command prints it) the output must name
    outcome: str  # REFUSED or WARNED
    why: str


def make_bad_bundles(root: Path) -> list[Case]:
    """Write the corpus under ``root``; return the cases to run on it."""
    from abundance.conftest import CONFUSION, predictions_table, rows, write_labelled_images
    from abundance.conftest import write_bundle as write_good_bundle
    from foramflow.bundle import zip_bundle

    root.mkdir(parents=True, exist_ok=True)
    good = write_good_bundle(root / "good", confusion=CONFUSION)
    images = write_labelled_images(root / "images", per_class=4)
    one_image = sorted(images.rglob("*.png"))[0]
    meta = (good / "model.json").read_bytes()

    (root / "bomb.zip").write_bytes(
        zip_bytes([("model.json", meta, 0), ("model.onnx", b"", 2**30)])
    )
    two = zip_bundle(good, root / "two_json.zip")
    with zipfile.ZipFile(two, "a") as archive:
        archive.writestr("copy/model.json", meta)
    deep = shutil.copytree(good, root / "deep_json")
    depth = 100_000
    text = meta.decode().rstrip().rstrip("}") + ', "notes": ' + "[" * depth + "]" * depth + "}"
    (deep / "model.json").write_text(text)

    digest = hashlib.sha256((good / "model.onnx").read_bytes()).hexdigest()
    for kind in BAD_VALIDATIONS:
        folder = shutil.copytree(good, root / f"validation_{kind}")
        _write_bad_validation(folder / "validation.npz", kind, digest)

    results = root / "results"
    results.mkdir()
    predictions_table(rows()).to_parquet(results / "predictions.parquet")
    (results / "run.json").write_text(json.dumps({"bundle": str(good), "threshold": 0.8}))
    bad_run = shutil.copytree(results, root / "results_bad_run_json")
    (bad_run / "run.json").write_text('{"bundle":\n')
    human = root / "human_1e308.csv"
    human.write_text("sample,dark,mid,bright\ns0,8,6,6\ns1,1e308,6,6\n")

    out = root / "out"
    cases = []
    for hostile in HOSTILE_BUNDLES:
        bundle = str(root / hostile)
        why = {
            "bomb.zip": "1 GiB model.onnx in a 1 MB zip",
            "two_json.zip": "model.json twice in the zip",
            "deep_json": "model.json nested 100 000 deep",
        }[hostile]
        named = bundle + ("/model.json" if hostile == "deep_json" else "")
        for command, args in (
            ("predict", ["predict", bundle, str(one_image)]),
            ("evaluate", ["evaluate", bundle, str(images), "--out", f"{out}/ev_{hostile}"]),
            ("calibrate", ["calibrate", bundle, str(images), "--out", f"{out}/ca_{hostile}"]),
            ("classify", ["classify", bundle, str(images), "--out", f"{out}/cl_{hostile}"]),
            ("ensemble", ["ensemble", bundle, str(good), "--out", f"{out}/en_{hostile}"]),
            ("abundance", ["abundance", str(results), "--bundle", bundle, "--out",
                           f"{out}/ab_{hostile}", "--bootstrap", "20"]),
        ):  # fmt: skip
            assert command in BUNDLE_COMMANDS
            outcome = WARNED if command == "abundance" else REFUSED
            cases.append(Case(f"{command} {hostile}", command, args, named, outcome, why))
    for kind in BAD_VALIDATIONS:
        bundle = str(root / f"validation_{kind}")
        named = f"{bundle}/validation.npz"
        why = f"validation.npz: {kind.replace('_', ' ')}"
        cases.append(
            Case(
                f"abundance validation_{kind}",
                "abundance",
                ["abundance", str(results), "--bundle", bundle, "--out", f"{out}/ab_v_{kind}",
                 "--bootstrap", "20"],
                named,
                WARNED,
                why,
            )
        )  # fmt: skip
        cases.append(
            Case(
                f"ensemble validation_{kind}",
                "ensemble",
                ["ensemble", bundle, str(good), "--out", f"{out}/en_v_{kind}"],
                named,
                REFUSED,
                why,
            )
        )
    zipped = zip_bundle(good, root / "good.zip")
    cases += [
        Case(
            "calibrate good.zip",
            "calibrate",
            ["calibrate", str(zipped), str(images), "--out", f"{out}/ca_zip"],
            str(zipped),
            REFUSED,
            "a zipped bundle cannot be updated: refused before predicting",
        ),
        Case(
            "abundance results_bad_run_json",
            "abundance",
            ["abundance", str(bad_run), "--out", f"{out}/ab_run", "--bootstrap", "20"],
            f"{bad_run}/run.json",
            REFUSED,
            "run.json cut short",
        ),
        Case(
            "abundance human_1e308.csv",
            "abundance",
            [
                "abundance",
                str(results),
                "--human",
                str(human),
                "--out",
                f"{out}/ab_h",
                "--bootstrap",
                "20",
            ],
            str(human),
            REFUSED,
            "human counts of 1e308",
        ),
    ]
    assert [case.name for case in cases] == case_names()
    return cases


def _write_bad_validation(path: Path, kind: str, digest: str) -> None:
    if kind == "bomb":
        n = 50_000_000
        arrays = {"labels": ((n,), "<i4"), "probabilities": ((n, 3), "<f4")}
        path.write_bytes(npz_bomb({**arrays, "model_sha256": ((), "<U64")}))
        return
    labels = np.tile([0, 1, 2], 10)
    probs = np.tile([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], (10, 1))
    if kind in ("nan", "inf"):
        probs[4, 1] = float(kind)
    elif kind == "one_class":
        labels[:] = 1
    elif kind == "empty":
        labels, probs = labels[:0], probs[:0]
    np.savez_compressed(
        path,
        labels=labels.astype(np.int32),
        probabilities=probs.astype(np.float32),
        model_sha256=np.array(digest),
    )


def judge(case: Case, run) -> list[str]:
    """What is wrong with ``run`` of ``case``: nothing when it did what the case says."""
    wrong = []
    if run.stopped:
        return [run.stopped]
    if run.traceback:
        wrong.append("traceback")
    lines = [line for line in run.output.splitlines() if line.strip()]
    naming = [line for line in lines if case.names in line]
    if case.outcome == REFUSED:
        errors = [line for line in lines if line.startswith("error: ")]
        if run.returncode not in (1, 2):
            wrong.append(f"exit {run.returncode}, expected 1 or 2")
        if len(errors) != 1 or case.names not in errors[0]:
            wrong.append(f"no one 'error:' line naming {case.names}")
    else:
        if run.returncode != 0:
            wrong.append(f"exit {run.returncode}, expected 0")
        if not naming:
            wrong.append(f"no line naming {case.names}")
    return wrong
