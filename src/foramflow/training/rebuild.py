"""Re-export a run's best network as a bundle folder or a single .zip file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from foramflow.bundle.folder import (
    description_path,
    other_files,
    read_meta,
    write_bundle,
    zip_bundle,
)
from foramflow.bundle.schema import PRECISION_RECORDS, RUN_BUNDLE, BundleError
from foramflow.bundle.validation import restamp_validation
from foramflow.errors import InputNotFound, OutputExists
from foramflow.models.registry import create_model
from foramflow.training.checkpoint import load_weights
from foramflow.training.export import onnx_bytes
from foramflow.training.prior import divide_out_class_weights
from foramflow.training.run_folder import BEST_CHECKPOINT


def rebuild_bundle(run: str | Path, out: str | Path) -> Path:
    """Export ``run/checkpoint_best.pt`` with the run's model.json to ``out`` (folder or .zip)."""
    run, out = Path(run), Path(out)
    source, weights = run / RUN_BUNDLE, run / BEST_CHECKPOINT
    for required in (description_path(source), weights):
        if not required.is_file():
            raise InputNotFound(f"{run}: not a finished run ({required.name} is missing)")
    meta = read_meta(source)
    if meta.model is None:
        raise BundleError(f"{description_path(source)}: does not name the network it holds")
    network = create_model(
        meta.model.name,
        n_classes=len(meta.labels),
        input_size=meta.input_size,
        channels=meta.channels,
        **meta.model.params,
    )
    load_weights(network, weights)
    if meta.prior_correction is not None:  # as the run exported it
        weights_by_class = meta.prior_correction.class_weights
        divide_out_class_weights(network, np.array([weights_by_class[k] for k in meta.labels]))
    # The int8 copy and the bf16 check describe the old model.onnx: they are redone on use.
    fresh = meta.without(*PRECISION_RECORDS)
    model = onnx_bytes(network, meta.preprocessing)
    if out.suffix.lower() != ".zip" and out.exists():
        raise OutputExists(f"{out}: already exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside ``out`` and renamed into place: never half a bundle at ``out``, and a
    # full disk is told as a failure to write ``out``.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        try:
            folder = write_bundle(
                Path(tmp) / RUN_BUNDLE,
                fresh,
                model,
                extra_files=other_files(source),  # e.g. the reference features
            )
            restamp_validation(folder, model)  # the same weights: the same outputs
            if out.suffix.lower() == ".zip":
                zip_bundle(folder, out)
            else:
                folder.rename(out)
        except OSError as err:
            written = err.filename is None or str(err.filename).startswith(tmp)
            if err.errno is None or not written:
                raise
            raise OSError(err.errno, err.strerror, str(out)) from err
    return out
