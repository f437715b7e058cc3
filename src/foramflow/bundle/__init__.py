"""The model bundle: a folder (or .zip) anyone can use to classify, without foramflow's
training code.

* :mod:`foramflow.bundle.schema`: model.json as a validated schema (:class:`BundleMeta`);
* :mod:`foramflow.bundle.folder`: :class:`Bundle`, loading, writing and changing bundles;
* :mod:`foramflow.bundle.validation`: the validation split's probabilities, for abundances;
* :mod:`foramflow.bundle.network_info`: the description for MISO and ParticleTrieur;
* :mod:`foramflow.bundle.engine`: the network in ONNX Runtime or OpenVINO;
* :mod:`foramflow.bundle.decode`: image files to network inputs;
* :mod:`foramflow.bundle.predict`: the two together, for every command that predicts.

Only this package spells model.json's keys and the bundle's file names.

The names below are imported on first use, so that a decoding process, which imports only
:mod:`foramflow.bundle.decode`, does not load pydantic or ONNX Runtime.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "Bundle": "folder",
    "BundleError": "schema",
    "BundleMeta": "schema",
    "ValidationSet": "validation",
    "read_meta": "folder",
    "update_bundle_meta": "folder",
    "write_bundle": "folder",
    "zip_bundle": "folder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
