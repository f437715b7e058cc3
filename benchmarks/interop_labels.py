"""Labels through EcoTaxa and ParticleTrieur and back, with names in any script, none lost.

EcoTaxa: a label project whose taxa, samples and annotators have non-ASCII names is
exported as a zip; EcoTaxa's own import code (``BO/Bundle.py`` and ``BO/TSVFile.py`` of an
ecotaxa_back checkout: unzip, find the TSV, validate its structure and every line, read
the lines) then reads it in a virtual environment of its own, without a database, and
every name, status and annotator must come back unchanged. A control shows that the check
can fail: the same TSV without its byte-order mark is read mangled.

ParticleTrieur: a project file as ParticleTrieur writes one (hand labels with and without
``val_by``, ``auto`` predictions, ``unsure``, unknown depths) goes through the label store
to a training set, and a store goes to a project file and back.

:func:`checks` returns ``(ok, name, detail)`` per check; a check that could not run has
``ok`` True and a detail starting with ``skipped``. Usage::

    python benchmarks/interop_labels.py [--ecotaxa-src DIR] [--venv DIR]

``--ecotaxa-src`` is a checkout of github.com/ecotaxa/ecotaxa_back (or its ``py``
folder), also read from ``FORAMFLOW_ECOTAXA_SRC``; ``--venv`` is where EcoTaxa's
environment is made once (default ``~/.cache/foramflow/ecotaxa-venv``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import numpy as np
from PIL import Image

from foramflow.io.particletrieur import read_project
from foramflow.label import export
from foramflow.label.store import LabelStore

Check = tuple[bool, str, str]

# What BO/Bundle.py and BO/TSVFile.py import, at the versions ecotaxa_back's
# requirements.txt pins where it matters (SQLAlchemy 1.4 and pydantic 1 for its models).
ECOTAXA_REQUIREMENTS = (
    "SQLAlchemy==1.4.31",
    "pydantic==1.10.7",
    "astral==2.2",
    "pgvector==0.2.4",
    "pytz",
    "numpy",
    "Pillow",
    "typing_extensions",
)
DEFAULT_VENV = Path.home() / ".cache" / "foramflow" / "ecotaxa-venv"

TAXA = ("Globigerina bulloïdes", "Neogloboquadrina pachyderma (dextral)", "Orbulina universa")
SAMPLES = ("Échantillon β 30cm", "Probe Ø 12,5 cm")
ANNOTATORS = ("Zoë Müller", 'Åsa "Ó" Ødegård', "李 娜")
MODEL = "run"

# Runs in EcoTaxa's environment: argv = ecotaxa py folder, zip file, scratch folder.
# Prints JSON: the validation's errors, the taxa and users it collected, the lines read.
_ECOTAXA_READER = r"""
import json, logging, sys, zipfile
from pathlib import Path

logging.disable(logging.CRITICAL)
py_dir, archive, scratch = sys.argv[1:4]
sys.path.insert(0, py_dir)
from BO.Bundle import InBundle
from BO.Mappings import ProjectMapping
from BO.TSVFile import TSVFile
from BO.helpers.ImportHelpers import ImportDiagnostic, ImportHow

unzipped = Path(scratch) / "unzipped"
with zipfile.ZipFile(archive) as z:  # as API_operations/imports/ImportBase.unzip_if_needed
    z.extractall(unzipped)
bundle = InBundle(str(unzipped), "upload", Path(scratch))
how = ImportHow(1, "", ProjectMapping(), False, [], 1)
diag = ImportDiagnostic()
rows = bundle.validate_each_file(how, diag, lambda *args: None)
lines = []
for tsv in bundle.possible_files:
    reader = TSVFile(tsv, "upload/" + tsv.name, bundle.path)
    with reader.open():
        for line in reader.rdr:
            lines.append({reader.clean_fields[k]: v for k, v in line.items() if k is not None})
print(json.dumps({
    "tsv_files": [str(p.relative_to(unzipped)) for p in bundle.possible_files],
    "rows": rows, "errors": diag.errors, "taxa": sorted(how.found_taxa),
    "users": sorted(how.found_users), "lines": lines,
}))
"""


def checks(
    ecotaxa_src: str | Path | None = None, venv_dir: str | Path | None = None
) -> list[Check]:
    """Every interoperability check of labels; see the module's docstring."""
    with tempfile.TemporaryDirectory(prefix="foramflow-interop-") as scratch:
        work = Path(scratch)
        results = _particletrieur_checks(work / "pt")
        results += _ecotaxa_checks(work / "ecotaxa", ecotaxa_src, venv_dir)
    return results


# -- a label project with names in several scripts -------------------------------------------


def _labelled_store(root: Path) -> LabelStore:
    """Per sample: one image per taxon validated by an annotator, one predicted, one bare."""
    rng = np.random.default_rng(0)
    for sample in SAMPLES:
        for i in range(len(TAXA) + 2):
            path = root / "images" / sample / f"p{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(path)
    store = LabelStore(root / "project")
    store.add_images(root / "images")
    paths = store.image_paths()
    by_name = {(p.parent.name, p.name): i for i, p in paths.items()}
    for s, sample in enumerate(SAMPLES):
        for t, taxon in enumerate(TAXA):
            annotator = ANNOTATORS[(s + t) % len(ANNOTATORS)]
            store.set_labels([by_name[sample, f"p{t:02d}.png"]], taxon, user=annotator)
        predicted = by_name[sample, f"p{len(TAXA):02d}.png"]
        store.set_predictions([(predicted, TAXA[s], 0.75, 0.5)], model=MODEL)
    return store


def _expected(store: LabelStore) -> list[dict]:
    """The validated and predicted images as EcoTaxa must read them."""
    expected = []
    for row in store.all_rows():
        if row["status"] == "validated":
            expected.append(("validated", row["label"], row["validated_by"], row["sample"]))
        elif row["status"] == "predicted":
            expected.append(("predicted", row["pred_label"], "", row["sample"]))
    return sorted(expected)


# -- EcoTaxa -----------------------------------------------------------------------------------


def _ecotaxa_checks(work: Path, src: str | Path | None, venv_dir: str | Path | None) -> list[Check]:
    src = src or os.environ.get("FORAMFLOW_ECOTAXA_SRC")
    py_dir = _ecotaxa_py_dir(Path(src)) if src else None
    if py_dir is None:
        where = f"{src} is not an ecotaxa_back checkout" if src else "no EcoTaxa checkout given"
        return [(True, "ecotaxa", f"skipped: {where} (--ecotaxa-src DIR)")]
    try:
        python = _ecotaxa_python(Path(venv_dir or DEFAULT_VENV))
    except subprocess.CalledProcessError as err:
        tail = (err.stderr or err.stdout or "").strip().splitlines()[-1:]
        return [(False, "ecotaxa: environment", f"pip install failed: {' '.join(tail)}")]
    store = _labelled_store(work)
    archive = export.export_ecotaxa(store, work / "export.zip")
    read = _read_with_ecotaxa(python, py_dir, archive, work / "read")
    if "failed" in read:
        return [(False, "ecotaxa: reading", read["failed"])]
    version = _ecotaxa_version(py_dir)
    results = [
        _check(
            "ecotaxa: zip layout",
            read["tsv_files"] == [f"ecotaxa_{store.project_dir.name}.tsv"]
            and read["rows"] == len(_expected(store)),
            f"TSV {read['tsv_files']}, {read['rows']} rows, EcoTaxa {version}",
        ),
        _check(
            "ecotaxa: structure and lines",
            not read["errors"],
            "; ".join(read["errors"]) or "no error in the import's validation",
        ),
    ]
    got = sorted(
        (
            line["object_annotation_status"],
            line["object_annotation_category"],
            line["object_annotation_person_name"],
            line["sample_id"],
        )
        for line in read["lines"]
    )
    wrong = [f"{g} != {e}" for g, e in zip(got, _expected(store), strict=False) if g != e]
    results.append(
        _check(
            "ecotaxa: taxa, samples, annotators, statuses",
            got == _expected(store),
            "; ".join(wrong[:3]) or f"{len(got)} lines unchanged",
        )
    )
    results.append(
        _check(
            "ecotaxa: taxa and persons the import resolves",
            read["taxa"] == sorted(t.lower() for t in TAXA)
            and read["users"] == sorted(a.lower() for a in ANNOTATORS),
            f"taxa {read['taxa']}, users {read['users']} (a prediction names no one)",
        )
    )
    results.append(_control_without_bom(python, py_dir, archive, work / "control"))
    return results


def _control_without_bom(python: str, py_dir: Path, archive: Path, work: Path) -> Check:
    """The same zip with the TSV's byte-order mark removed must be read mangled."""
    import zipfile

    work.mkdir(parents=True)
    stripped = work / "no_bom.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(stripped, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith(".tsv"):
                data = data.removeprefix(b"\xef\xbb\xbf")
            target.writestr(item, data)
    read = _read_with_ecotaxa(python, py_dir, stripped, work / "read")
    names = {line.get("object_annotation_category") for line in read.get("lines", [])}
    mangled = bool(names) and TAXA[0] not in names
    seen = sorted(n for n in names if n and "bullo" in n)
    return _check("ecotaxa: control, no BOM is misread", mangled, f"read as {seen}")


def _read_with_ecotaxa(python: str, py_dir: Path, archive: Path, scratch: Path) -> dict:
    scratch.mkdir(parents=True)
    done = subprocess.run(
        [python, "-c", _ECOTAXA_READER, str(py_dir), str(archive), str(scratch)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    if done.returncode != 0:
        return {"failed": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ecotaxa_py_dir(src: Path) -> Path | None:
    for candidate in (src / "py", src):
        if all((candidate / "BO" / name).is_file() for name in ("TSVFile.py", "Bundle.py")):
            return candidate
    return None


def _ecotaxa_version(py_dir: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(py_dir), "log", "-1", "--format=%h %cs"], capture_output=True, text=True
    )
    return f"commit {done.stdout.strip()}" if done.returncode == 0 else "checkout (not a git one)"


def _ecotaxa_python(venv_dir: Path) -> str:
    """EcoTaxa's interpreter, its environment made and filled the first time."""
    python = venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = venv_dir / ".foramflow-requirements"
    wanted = "\n".join(ECOTAXA_REQUIREMENTS)
    if not (python.is_file() and stamp.is_file() and stamp.read_text() == wanted):
        venv.create(venv_dir, with_pip=True, clear=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *ECOTAXA_REQUIREMENTS],
            check=True,
            capture_output=True,
            text=True,
        )
        stamp.write_text(wanted)
    return str(python)


# -- ParticleTrieur ----------------------------------------------------------------------------


def _pt_image(name: str, code: str, *, by="", val_by="", auto=False, scores=None, depth="0.0"):
    scores = scores or {code: 1.0}
    items = "".join(
        f"<classification><code>{c}</code><value>{v}</value></classification>"
        for c, v in scores.items()
    )
    return (
        f"<image><source><filename>images/{name}</filename><sampleID>{SAMPLES[0]}</sampleID>"
        f"<index1>{depth}</index1><resolution>0.0</resolution></source><val_by>{val_by}</val_by>"
        f'<classifications id="{by}">{items}</classifications>'
        f"<tags>{'<tag>auto</tag>' if auto else ''}</tags></image>"
    )


def _particletrieur_checks(work: Path) -> list[Check]:
    """A project as ParticleTrieur saves one → store → training set; store → project → store."""
    a, b = "Globigerina_bulloides", "Orbulina_universa"
    images = [
        _pt_image("v.png", a, by=ANNOTATORS[0], val_by=ANNOTATORS[0], depth="30.0"),
        _pt_image("h1.png", a, by="ross"),  # labelled by hand, not ticked "validated"
        _pt_image("h2.png", b, by="ross"),
        _pt_image("hu.png", "unsure", by="ross"),
        _pt_image("p.png", b, by="cnn", auto=True, scores={a: 0.2, b: 0.8}),
        _pt_image("pu.png", "unsure", by="cnn", auto=True, scores={a: 0.4, "unsure": 1.0}),
        _pt_image("n.png", "unlabeled", by="default"),
    ]
    rng = np.random.default_rng(1)
    for name in ("v", "h1", "h2", "hu", "p", "pu", "n"):
        path = work / "images" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(path)
    xml_path = work / "project.xml"
    xml_path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><project><images>{"".join(images)}'
        "</images></project>",
        encoding="utf-8",
    )
    store = LabelStore(work / "store")
    export.import_particletrieur(store, xml_path)
    counts = export.export_training_set(store, work / "train")
    statuses = store.status_counts()
    results = [
        _check(
            "particletrieur: every hand label in the training set",
            counts == {a: 2, b: 1},
            f"training set {counts}",
        ),
        _check(
            "particletrieur: no prediction promoted",
            statuses.get("validated") == 4 and statuses.get("predicted") == 2,
            f"{statuses}",
        ),
    ]
    round_trip = work / "round" / "project.xml"
    round_trip.parent.mkdir()
    export.export_particletrieur(store, round_trip)
    again = LabelStore(work / "again")
    export.import_particletrieur(again, round_trip)
    first, second = _label_rows(store), _label_rows(again)
    auto = sum(r.predicted for r in read_project(round_trip)[0])
    results.append(
        _check(
            "particletrieur: store → project → store",
            first == second and auto == 2,
            f"{len(first)} images equal, {auto} tagged auto"
            if first == second
            else f"{sum(first[k] != second.get(k) for k in first)} images differ",
        )
    )
    return results


def _label_rows(store: LabelStore) -> dict[str, tuple]:
    paths = store.image_paths()
    return {
        paths[r["id"]].name: (
            r["label"], r["validated_by"], r["pred_label"], r["pred_score"], r["pred_model"],
            r["sample"], r["depth_cm"],
        )
        for r in store.all_rows()
    }  # fmt: skip


def _check(name: str, ok: bool, detail: str) -> Check:
    return bool(ok), name, detail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecotaxa-src", type=Path, help="ecotaxa_back checkout")
    parser.add_argument("--venv", type=Path, help=f"EcoTaxa's environment ({DEFAULT_VENV})")
    args = parser.parse_args()
    failed = 0
    for ok, name, detail in checks(args.ecotaxa_src, args.venv):
        word = "SKIP" if detail.startswith("skipped") else ("PASS" if ok else "FAIL")
        failed += not ok
        print(f"{word} {name}: {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
