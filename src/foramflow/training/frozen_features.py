"""Vectors of images through a frozen network (a backbone's head or bottom), computed once
and kept in the feature cache: what the transfer tail and the top train on.

An image's vector is cached under the hash of its file and a copy number: copy 0 is the
image as it lies, other copies are views of it (augmented copies, turns), each drawn from
the image's own hash so that a cached vector always describes the same view.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from functools import partial
from pathlib import Path

import numpy as np
import torch

from foramflow.bundle.engine import available_cores
from foramflow.bundle.schema import INPUT_NAME
from foramflow.data.augment import augment_batch
from foramflow.models.cyclic import N_PATHS
from foramflow.models.transfer import TransferHead
from foramflow.progress import Progress
from foramflow.training.export import write_onnx
from foramflow.training.feature_cache import FeatureCache
from foramflow.training.precision import PRECISIONS, Step

_CHUNK = 256  # images per cache write: an interruption loses at most this many vectors
_READ_CHUNK = 4096  # vectors read from the cache at a time
ONNX_BATCH = 64  # images per ONNX Runtime call (16 ran no faster for Lite0's bottom)


def batch_size_for(head: TransferHead, input_size: int, device: torch.device) -> int:
    """Images per forward pass. On a CPU about 16 backbone rows at 128 px (fewer at larger
    sizes, 4 images when cyclic), so that the activations stay in the processor's cache:
    measured 2.5× faster than 64 rows for EfficientNet-Lite0 (benchmarks/bench_transfer.py).
    """
    if device.type != "cpu":
        return 256
    rows = 16 * (128 / input_size) ** 2
    return max(1, round(rows / (N_PATHS if head.cyclic else 1)))


@torch.inference_mode()
def extract_features(
    head: TransferHead,
    images: np.ndarray,
    *,
    device: torch.device,
    bf16: bool,
    batch_size: int | None = None,
) -> np.ndarray:
    """Head vectors (N, F) float32 of preprocessed images (N, C, S, S): the backbone's work."""
    batch_size = batch_size or batch_size_for(head, images.shape[-1], device)
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[start : start + batch_size], dtype=np.float32))
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(head(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, head.features), np.float32)


class FrozenFeatures:
    """Vectors (N, F) float32 of preprocessed images (N, C, S, S) through a frozen network.

    On a CPU in fp32, ONNX Runtime computes them, the network exported on first use: on 2
    AVX2 cores, 2.1 to 3.1 times PyTorch's speed (``benchmarks/bench_transfer.py``), and
    536 images/s against 157 for EfficientNet-Lite0's bottom in a training run at 160 px.
    With bf16 autocast, or on a GPU, PyTorch computes them (:func:`extract_features`).
    """

    def __init__(self, head: torch.nn.Module, *, device: torch.device, bf16: bool):
        self.head, self.device, self.bf16 = head, device, bf16
        self.by_onnxruntime = device.type == "cpu" and not bf16
        self._session = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if not self.by_onnxruntime:
            return extract_features(self.head, images, device=self.device, bf16=self.bf16)
        if not len(images):
            return np.zeros((0, self.head.features), np.float32)
        if self._session is None:
            self._session = self._export(np.asarray(images[:1], dtype=np.float32))
        out = []
        for start in range(0, len(images), ONNX_BATCH):
            batch = np.ascontiguousarray(images[start : start + ONNX_BATCH], dtype=np.float32)
            out.append(self._session.run(None, {INPUT_NAME: batch})[0])
        return np.concatenate(out)

    def _export(self, image: np.ndarray):
        import onnxruntime as ort

        head = deepcopy(self.head).float().cpu()
        example = torch.from_numpy(np.repeat(image, 2, axis=0))  # a dynamic batch needs two
        options = ort.SessionOptions()
        options.intra_op_num_threads = available_cores()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as classify
        with tempfile.TemporaryDirectory(prefix="foramflow-features-") as tmp:
            path = Path(tmp) / "features.onnx"
            write_onnx(head, path, example, output_name="features")
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def extractor_trial(
    head: torch.nn.Module, images: np.ndarray, *, device: torch.device
) -> tuple[dict[str, FrozenFeatures], dict[str, Step]]:
    """An extractor in each precision, and a step of each on ``images`` to time: the
    winner is kept, so that its ONNX export (say) is not made again."""
    extractors = {
        name: FrozenFeatures(head, device=device, bf16=name == "bf16") for name in PRECISIONS
    }
    steps = {name: partial(_count, extract, images) for name, extract in extractors.items()}
    return extractors, steps


def _count(extract: FrozenFeatures, images: np.ndarray) -> int:
    return len(extract(images))


def augmented_copies(images: np.ndarray, hashes: Sequence[str], copy: int) -> np.ndarray:
    """Augmented copy number ``copy`` of each image, identical for the same bytes in every run.

    Each image draws its rotation, zoom, gamma and gain from a generator seeded by its own
    hash and the copy number, so a cached vector always describes the same copy.
    """
    out = np.empty(images.shape, dtype=np.float32)
    for i, (image, sha) in enumerate(zip(images, hashes, strict=True)):
        seed = int(hashlib.sha256(f"{sha}:{copy}".encode()).hexdigest()[:15], 16)
        generator = torch.Generator().manual_seed(seed)
        x = torch.from_numpy(np.asarray(image[None], dtype=np.float32))
        out[i] = augment_batch(x, generator=generator)[0].numpy()
    return out


def cached_features(
    cache: FeatureCache,
    extract: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    hashes: Sequence[str],
    *,
    copy: int = 0,
    progress: Progress,
    make_copy: Callable[[np.ndarray, Sequence[str], int], np.ndarray] = augmented_copies,
    dtype=np.float32,
    what: str | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, int, float]:
    """Vectors (N, F) of ``images`` (copy 0) or of their copy number ``copy`` (by default
    augmented), from the cache where present, computed by ``extract`` (a
    :class:`FrozenFeatures`) and stored otherwise. Returns
    (vectors, number computed, seconds spent computing). The vectors are written into
    ``out`` when given (a view of a memory-mapped file, say): no other copy is held."""
    if out is None:
        out = np.empty((len(hashes), cache.dim), dtype=dtype)
    places: dict[str, list[int]] = {}
    for i, sha in enumerate(hashes):
        places.setdefault(sha, []).append(i)  # identical files are computed once
    unique = list(places)
    missing: list[int] = []
    for start in range(0, len(unique), _READ_CHUNK):
        wanted = unique[start : start + _READ_CHUNK]
        found = cache.get(wanted, copy, dtype)
        for sha in wanted:
            if sha in found:
                out[places[sha]] = found[sha]
            else:
                missing.append(places[sha][0])
    seconds = 0.0
    if missing:
        what = what or ("Computing features" if copy == 0 else f"Computing features, copy {copy}")
        task = progress.task(what, len(missing))
        try:
            for start in range(0, len(missing), _CHUNK):
                index = missing[start : start + _CHUNK]
                chunk_hashes = [hashes[i] for i in index]
                batch = images[index]
                if copy:
                    batch = make_copy(batch, chunk_hashes, copy)
                began = time.perf_counter()
                vectors = extract(batch)
                seconds += time.perf_counter() - began
                cache.put(chunk_hashes, vectors, copy)
                stored = vectors.astype(np.float16)  # as a rerun reads them
                for sha, vector in zip(chunk_hashes, stored, strict=True):
                    out[places[sha]] = vector
                task.advance(len(index))
        finally:
            task.done()
    return out, len(missing), seconds
