"""Transfer learning (method §4): cached head features, a small tail, one bundle.

A run: preprocess and split the set as the full networks do (:func:`prepare_data`);
compute each image's head vector once — and optionally vectors of N augmented copies of
each training image — through the feature cache; train the tail on the vectors with the
same loss, class weights, batch size, Adam and ALRS schedule as the full networks; join
head and tail into one network and export, evaluate and report it as any other run
(:func:`export_and_evaluate`). The run folder is that of :mod:`foramflow.train.loop`, with
no ``checkpoint_last.pt``: a run that stops is simply run again, and every vector already
computed comes from the cache. The bundle also holds the vectors of the labelled images
(its reference features), for ``foramflow similar``.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foramflow.bundle.engine import available_cores
from foramflow.bundle.folder import Bundle, description_path, update_bundle_meta
from foramflow.bundle.schema import INPUT_NAME, REFERENCE_FILE, RUN_BUNDLE, TransferInfo
from foramflow.data.augment import augment_batch
from foramflow.errors import InputNotFound, InvalidInput
from foramflow.imaging.preprocess import PreprocessSpec, load_and_preprocess
from foramflow.io.images import ImageReadError
from foramflow.models.backbones import file_sha256, get_backbone, resolve_weights
from foramflow.models.cyclic import N_PATHS
from foramflow.models.registry import create_model, get_entry
from foramflow.models.transfer import TAIL_DROPOUT, TransferHead, TransferNetwork
from foramflow.progress import Progress, Quiet
from foramflow.train.checkpoint import load_weights, save_checkpoint
from foramflow.train.config import TrainConfig
from foramflow.train.export import write_onnx
from foramflow.train.feature_cache import (
    POOLED,
    ExtractorSpec,
    FeatureCache,
    ReferenceSet,
    default_cache_root,
    image_sha256,
)
from foramflow.train.finish import export_and_evaluate
from foramflow.train.fit import BEST_CHECKPOINT, LAST_CHECKPOINT, Batches, fit
from foramflow.train.loop import CannotResume, PreparedData, Trainer

_CHUNK = 256  # images per cache write: an interruption loses at most this many vectors
_READ_CHUNK = 4096  # vectors read from the cache at a time
ONNX_BATCH = 64  # images per ONNX Runtime call (16 ran no faster for Lite0's bottom)


def trainer_class(model: str) -> type[Trainer]:
    """The trainer for a registered model: full networks, transfer learning, or a top
    fine-tuned on cached maps."""
    from foramflow.train.top import TopTrainer

    return {"transfer": TransferTrainer, "top": TopTrainer}.get(get_entry(model).kind, Trainer)


# -- feature extraction --------------------------------------------------------------------


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
        with tempfile.TemporaryDirectory(prefix="foramflow-features-") as tmp:
            path = Path(tmp) / "features.onnx"
            write_onnx(head, path, example, output_name="features")
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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


# -- training ------------------------------------------------------------------------------


class TransferTrainer(Trainer):
    """A transfer-learning run; ``run()`` extracts (or reuses) features, trains the tail,
    then exports and evaluates the joined network."""

    def __init__(
        self, config: TrainConfig, *, progress: Progress | None = None, resume: bool = False
    ):
        if resume:
            raise CannotResume(
                "transfer runs do not resume: start again in a new run folder "
                "(features already computed come from the cache)"
            )
        build = get_entry(config.model).build
        self.backbone = build.backbone
        self.weights = resolve_weights(self.backbone, config.weights)
        super().__init__(config, progress=progress or Quiet())
        self.cache_root = Path(config.feature_cache or default_cache_root())

    def run(self) -> Path:
        c = self.config
        data = self._start()
        classes = data.image_set.classes
        started = time.perf_counter()
        self.model_params = {
            "cyclic": c.cyclic,
            "pool": c.pool,
            "stages": c.stages,
            "mirror": c.flips,
            "dense": c.dense,
            "dropout": list(TAIL_DROPOUT),
        }
        network = create_model(
            c.model,
            n_classes=len(classes),
            input_size=c.input_size,
            channels=c.channels,
            weights=str(self.weights),
            **self.model_params,
        )
        head = network.head.to(self.device).to(memory_format=torch.channels_last)
        hashes = [image_sha256(p) for p in data.paths]
        features, train_x, train_y, stats = self._features(head, data, hashes)
        stats["extraction_s"] = time.perf_counter() - started

        train_counts = np.bincount(data.labels[data.train_index], minlength=len(classes))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a 1M-parameter MLP gains nothing from threads, and a busy
        try:  # machine makes their synchronisation cost ten times the work
            state = self._fit_tail(network, train_x, train_y, features, data, train_counts)
            load_weights(network.tail, self.out / BEST_CHECKPOINT)
            (self.out / LAST_CHECKPOINT).unlink()  # transfer runs are rerun, not resumed
        finally:
            torch.set_num_threads(threads)
        state["seconds"] += stats["extraction_s"]  # method §6: training time includes features
        network.cpu()
        save_checkpoint(network.state_dict(), self.out / BEST_CHECKPOINT)
        report = export_and_evaluate(
            network,
            data,
            config=c.model_copy(update={"augment": c.augmented_copies > 0}),
            out=self.out,
            model_params=self.model_params,
            train_counts=train_counts,
            state=state,
            progress=self.progress,
        )
        bundle = self.out / RUN_BUNDLE
        ReferenceSet(
            vectors=features,
            sha256=np.array(hashes, dtype=str),
            paths=np.array([str(p) for p in data.paths], dtype=str),
            labels=np.array([classes[k] for k in data.labels], dtype=str),
        ).save(bundle / REFERENCE_FILE)
        update_bundle_meta(
            bundle,
            transfer=TransferInfo(
                extractor=asdict(self.spec),
                extractor_key=self.spec.key(),
                weights_path=str(self.weights),
                feature_cache=str(self.cache_folder),
                reference_file=REFERENCE_FILE,
                augmented_copies=c.augmented_copies,
                tail_training_s=state["tail_s"],
                **stats,
            ),
        )
        return report

    def _features(self, head: TransferHead, data: PreparedData, hashes: list[str]):
        """(vectors of every image, tail training inputs and labels, extraction statistics)."""
        c = self.config
        self.spec = ExtractorSpec(
            backbone=self.backbone,
            weights_sha256=file_sha256(self.weights),
            preprocessing=PreprocessSpec(size=c.input_size, channels=c.channels).to_dict(),
            cyclic=c.cyclic,
            pool=c.pool,
            precision="bf16" if self.bf16 else "fp32",
            stages=c.stages,
            mirror=c.flips,
        )
        extract = FrozenFeatures(head, device=self.device, bf16=self.bf16)
        with FeatureCache.open(
            self.cache_root,
            self.spec,
            dim=head.features,
            weights_path=self.weights,
            notify=lambda m: self.progress.message(m, warning=True),
        ) as cache:
            self.cache_folder = cache.folder
            features, computed, seconds = cached_features(
                cache, extract, data.images, hashes, progress=self.progress
            )
            train_hashes = [hashes[i] for i in data.train_index]
            train_x, train_y = [features[data.train_index]], [data.labels[data.train_index]]
            for k in range(1, c.augmented_copies + 1):
                vectors, n, s = cached_features(
                    cache,
                    extract,
                    data.images[data.train_index],
                    train_hashes,
                    copy=k,
                    progress=self.progress,
                )
                train_x.append(vectors)
                train_y.append(data.labels[data.train_index])
                computed, seconds = computed + n, seconds + s
            names = data.image_set.classes
            cache.record_images(hashes, data.paths, [names[k] for k in data.labels])
        rebuilt = cache.bad_rows  # read back damaged: computed again and replaced
        total = len(hashes) + c.augmented_copies * len(train_hashes)
        self.progress.message(
            f"Features: {total - computed} from the cache, {computed} computed"
            + (f" ({computed / seconds:.1f} images/s)" if computed else "")
            + (f", {rebuilt} damaged row(s) rebuilt" if rebuilt else "")
            + f"; cache {self.cache_folder}"
        )
        stats = {
            "vectors_cached": total - computed,
            "vectors_computed": computed,
            "compute_s": seconds,
            "images_per_s": computed / seconds if computed else None,
        }
        return features, np.concatenate(train_x), np.concatenate(train_y), stats

    def _fit_tail(self, network: TransferNetwork, train_x, train_y, features, data, train_counts):
        """Train the tail on vectors in the one fit loop; the best epoch's tail is in
        ``checkpoint_best.pt``."""
        tail = network.tail.to(self.device)
        val_x = torch.from_numpy(features[data.val_index]).to(self.device)
        val_y = torch.from_numpy(data.labels[data.val_index]).to(self.device)

        @torch.no_grad()
        def validate(module: torch.nn.Module) -> tuple[float, float]:
            module.eval()
            logits = module(val_x)
            if not len(val_y):
                return float("nan"), float("nan")
            accuracy = float((logits.argmax(1) == val_y).float().mean())
            return float(F.cross_entropy(logits, val_y)), accuracy

        batches = Batches(
            module=tail,
            train_x=torch.from_numpy(train_x).to(self.device),
            train_y=torch.from_numpy(train_y).to(self.device),
            validate=validate,
            prepare=lambda x, generator: x,
            device=self.device,
        )
        optimizer = self.optimizer(tail.parameters())
        state = fit(
            batches,
            optimizer,
            self.fit_settings(data, train_counts),
            out=self.out,
            progress=self.progress,
            what="Tail epoch",
            log_epochs=False,
        )
        state["tail_s"] = state["seconds"]
        self.progress.message(
            f"Tail trained: {state['epoch']} epochs in {state['tail_s']:.1f} s, best validation "
            f"accuracy {state['best_accuracy']:.3f} (epoch {state['best_epoch']})"
        )
        return state


# -- nearest labelled images ---------------------------------------------------------------


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
