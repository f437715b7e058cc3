"""Re-export a run's best network as a bundle folder or a single .zip file."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch

from foramflow.io.bundle import META_FILE
from foramflow.io.files import write_json_atomic
from foramflow.models.registry import create_model
from foramflow.train.export import MODEL_FILE, export_onnx

MODEL_FILES = (MODEL_FILE, "model.int8.onnx")
STALE_FIELDS = ("int8", "bf16")


def rebuild_bundle(run: str | Path, out: str | Path) -> Path:
    """Export ``run/checkpoint_best.pt`` with the run's model.json to ``out`` (folder or .zip)."""
    run, out = Path(run), Path(out)
    meta_path, weights = run / "bundle" / META_FILE, run / "checkpoint_best.pt"
    for required in (meta_path, weights):
        if not required.is_file():
            raise FileNotFoundError(f"{run}: not a finished run ({required.name} is missing)")
    meta = json.loads(meta_path.read_text())
    network = create_model(
        meta["model"]["name"],
        n_classes=len(meta["labels"]),
        input_size=meta["input"]["size"],
        channels=meta["input"]["channels"],
        **meta["model"]["params"],
    )
    network.load_state_dict(torch.load(weights, weights_only=True))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bundle"
        folder.mkdir()
        export_onnx(
            network,
            folder / MODEL_FILE,
            input_size=meta["input"]["size"],
            channels=meta["input"]["channels"],
        )
        for path in sorted((run / "bundle").iterdir()):  # e.g. reference_features.npz
            if path.is_file() and path.name not in (META_FILE, *MODEL_FILES):
                shutil.copy2(path, folder / path.name)
        # The int8 copy and the bf16 check describe the old model.onnx: they are redone on use.
        fresh = {k: v for k, v in meta.items() if k not in STALE_FIELDS}
        write_json_atomic(folder / META_FILE, fresh)
        if out.suffix.lower() == ".zip":
            out.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(folder.iterdir()):
                    archive.write(path, path.name)
        else:
            if out.exists():
                raise FileExistsError(f"{out}: already exists")
            shutil.copytree(folder, out)
    return out
