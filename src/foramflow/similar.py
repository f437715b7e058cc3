"""Nearest labelled images (``foramflow similar``): the vectors of a transfer-learning
bundle's labelled images, or of a feature cache, and those of new images by the same
frozen head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from foramflow.bundle.folder import Bundle, description_path
from foramflow.bundle.schema import REFERENCE_FILE
from foramflow.errors import InputNotFound, InvalidInput
from foramflow.imaging.preprocess import PreprocessSpec, load_and_preprocess
from foramflow.io.images import ImageReadError
from foramflow.models.backbones import file_sha256, get_backbone
from foramflow.models.transfer import TransferHead
from foramflow.training.feature_cache import POOLED, ExtractorSpec, FeatureCache, ReferenceSet
from foramflow.training.frozen_features import extract_features


def open_reference(source: str | Path) -> tuple[ReferenceSet, ExtractorSpec, str | None]:
    """(labelled images with vectors, their extractor, its recorded weights file) of a
    transfer-learning bundle folder or a feature cache."""
    source = Path(source)
    if source.is_file():
        raise InvalidInput(f"{source}: unpack the bundle .zip into a folder first")
    if description_path(source).is_file():
        meta = Bundle.load(source).meta
        transfer = meta.transfer
        if not transfer:
            model = meta.model.name if meta.model else None
            raise InvalidInput(
                f"{source}: not a transfer-learning bundle (model {model!r}); "
                "train one with --model efficientnet_lite0_tl"
            )
        reference = source / (transfer.reference_file or REFERENCE_FILE)
        if not reference.is_file():
            raise InputNotFound(f"{reference}: missing; use the feature cache instead")
        spec = ExtractorSpec(**transfer.extractor)
        return ReferenceSet.load(reference), spec, transfer.weights_path
    if not source.is_dir():
        raise InputNotFound(f"{source}: no such bundle or feature cache")
    with FeatureCache.find(source) as cache:
        if cache.spec.output != POOLED:
            raise InvalidInput(
                f"{cache.folder}: holds a network's intermediate maps ({cache.spec.output}), "
                "not feature vectors; give a transfer-learning bundle or its feature cache"
            )
        return cache.labelled(), cache.spec, cache.weights_path


def find_weights(spec: ExtractorSpec, recorded: str | None, given: str | Path | None) -> Path:
    """The weights file behind ``spec``: the given one, else the recorded one, else the
    backbone's installed default, whichever exists and has the recorded hash."""
    candidates = [given] if given else [recorded, get_backbone(spec.backbone).default_weights()]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if path.is_file() and file_sha256(path) == spec.weights_sha256:
            return path
    if given:
        raise InvalidInput(f"{given}: not the weights file these features were computed with")
    raise InputNotFound(
        f"the {spec.backbone} weights these features were computed with are not at "
        f"{recorded}; pass --weights PATH"
    )


def build_head(spec: ExtractorSpec, weights: str | Path) -> TransferHead:
    """The head described by ``spec``, with its weights file (see :func:`find_weights`)."""
    return TransferHead(
        spec.backbone,
        input_size=spec.input_size,
        cyclic=spec.cyclic,
        pool=spec.pool,
        stages=spec.stages,
        mirror=spec.mirror,
        weights=weights,
    )


def embed_paths(
    head: TransferHead, paths: Sequence[str | Path], spec: ExtractorSpec
) -> tuple[np.ndarray, list[Path], dict[Path, str]]:
    """Head vectors of image files: (vectors of the readable ones, their paths, {bad: reason})."""
    preprocess = PreprocessSpec.from_dict(spec.preprocessing)
    arrays, ok, bad = [], [], {}
    for path in map(Path, paths):
        try:
            arrays.append(load_and_preprocess(path, preprocess))
            ok.append(path)
        except ImageReadError as err:
            bad[path] = err.reason
    if not arrays:
        return np.zeros((0, head.features), np.float32), ok, bad
    bf16 = spec.precision == "bf16"
    vectors = extract_features(head, np.stack(arrays), device=torch.device("cpu"), bf16=bf16)
    return vectors, ok, bad
