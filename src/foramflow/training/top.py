"""Fine-tune the top of a pretrained backbone on cached maps of its frozen bottom.

A run (see :mod:`foramflow.models.top_tuned` for the network):

1. preprocess and split the set as every run does;
2. compute the frozen bottom's rows, once, through the feature cache (an interrupted run
   keeps every chunk it finished, and a later run on the same images, any split, reads
   them back): every image as it lies, and the training images in their three other 90°
   turns, with ``--flips`` in the four turns of their mirror image, and in
   ``--augmented-copies`` augmented copies;
3. with the training rows in a memory-mapped file (:data:`ROWS_FILE`), standardise the
   top's features over the training split, then train the top in the one fit loop, each
   step showing every image in one of its views drawn at random, validating on the
   images as they lie;
4. export the joined network and evaluate it as any other run.

The run folder is that of :mod:`foramflow.training.run_folder`; an interrupted run resumes
from its last epoch (``--resume``), its rows from the cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.models.backbones import file_sha256, resolve_weights
from foramflow.models.cyclic import N_PATHS
from foramflow.models.registry import create_model, get_entry
from foramflow.models.top_tuned import Top, TopTuned
from foramflow.models.transfer import TAIL_DROPOUT
from foramflow.progress import Progress
from foramflow.training.checkpoint import check_weights, read_checkpoint, save_checkpoint
from foramflow.training.config import TrainConfig
from foramflow.training.feature_cache import (
    ExtractorSpec,
    FeatureCache,
    default_cache_root,
    image_sha256,
)
from foramflow.training.finish import export_and_evaluate
from foramflow.training.fit import Batches
from foramflow.training.frozen_features import (
    FrozenFeatures,
    augmented_copies,
    cached_features,
)
from foramflow.training.precision import EPOCHS, Step, training_steps
from foramflow.training.prepared import PreparedData
from foramflow.training.run_folder import BEST_CHECKPOINT
from foramflow.training.trainer import Trainer, to_device

STANDARDISE_IMAGES = 4096  # training images whose features set the standardisation
#: The training rows, memory-mapped while the top trains (128 kB an image for the four
#: turns at 160 px: 13 GB for 100 000 images), so that the system can page them out when
#: memory is short; deleted once the top has trained (the feature cache keeps them).
ROWS_FILE = "bottom_rows.tmp.npy"
VALIDATION_BATCH = 64  # rows: small batches keep the top's activations in the CPU's cache


def turned(images: np.ndarray, hashes: Sequence[str], quarter_turns: int) -> np.ndarray:
    """Images (N, C, S, S) turned by ``quarter_turns``·90°, as :func:`cyclic_slice` turns them."""
    del hashes  # the turn depends on nothing else
    return np.ascontiguousarray(np.rot90(images, quarter_turns, axes=(2, 3)))


def view(images: np.ndarray, hashes: Sequence[str], copy: int) -> np.ndarray:
    """View number ``copy`` of each image: turns 0–3; augmented copies from 4 on (random
    rotation, zoom, gamma and gain, drawn from each image's hash and the copy number);
    −1 to −4 the mirror image (left–right) in turns 0–3, as :func:`dihedral_views` has
    them. The numbers are the feature cache's keys."""
    if copy < 0:
        return turned(images[..., ::-1], hashes, -1 - copy)
    if copy < N_PATHS:
        return turned(images, hashes, copy)
    return augmented_copies(images, hashes, copy)


def view_numbers(*, mirror: bool, augmented: int) -> list[int]:
    """The training views' numbers (see :func:`view`), in the order of the rows."""
    mirrored = [-1 - k for k in range(N_PATHS)] if mirror else []
    return [*range(N_PATHS), *mirrored, *range(N_PATHS, N_PATHS + augmented)]


def _view_name(copy: int, *, validation: bool = False) -> str:
    if validation:
        return "Frozen bottom, validation images"
    if copy < 0:
        return f"Frozen bottom, training images mirrored and turned {90 * (-1 - copy)}°"
    if copy < N_PATHS:
        return f"Frozen bottom, training images turned {90 * copy}°"
    return f"Frozen bottom, augmented copy {copy - N_PATHS + 1}"


class _Selection:
    """``images[index]`` without the copy: rows are taken as they are asked for."""

    def __init__(self, images: np.ndarray, index: np.ndarray):
        self.images, self.index = images, np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows) -> np.ndarray:
        return self.images[self.index[rows]]


class TopTrainer(Trainer):
    """A run that fine-tunes the top of a split backbone; ``run()`` caches the bottom's
    rows (or reads them back), trains the top, then exports and evaluates the network."""

    def __init__(
        self, config: TrainConfig, *, progress: Progress | None = None, resume: bool = False
    ):
        self.backbone = get_entry(config.model).build.backbone
        self.weights = resolve_weights(self.backbone, config.weights)
        super().__init__(config, progress=progress, resume=resume)
        self.cache_root = Path(config.feature_cache or default_cache_root())
        self.rows_file = self.out / ROWS_FILE

    def run(self) -> Path:
        c = self.config
        data = self.start()
        classes = data.image_set.classes
        self.model_params = {
            "cyclic": c.cyclic,
            "mirror": c.flips,
            "dense": c.dense,
            "dropout": list(TAIL_DROPOUT),
            "weights": str(self.weights),
        }
        network: TopTuned = create_model(
            c.model,
            n_classes=len(classes),
            input_size=c.input_size,
            channels=c.channels,
            **self.model_params,
        )
        bottom = network.bottom.to(self.device).to(memory_format=torch.channels_last)
        self.features_bf16 = self.settle_features_precision(bottom, data, "bottom's rows")
        self.bf16 = self.settle_precision(
            EPOCHS,
            "training steps of the top on the frozen bottom's rows of a batch of training images",
            lambda: self._trial_steps(network, data),
        )
        started = time.perf_counter()
        try:
            train_rows, val_rows = map(torch.from_numpy, self._rows(network, data))
            top = network.top.to(self.device)
            top.standardise(train_rows[:STANDARDISE_IMAGES, 0].to(self.device))
            prepared_s = time.perf_counter() - started
            train_counts = np.bincount(data.labels[data.train_index], minlength=len(classes))
            optimizer = self._optimizer(top, data)
            batches = self._batches(top, train_rows, val_rows, data)
            kept = f", the bottom's cached rows in {self.cache_folder}"
            state = self.train_epochs(batches, optimizer, data, train_counts, kept=kept)
        finally:
            train_rows = batches = None  # let go of the memory map before its file
            self.rows_file.unlink(missing_ok=True)
        state["seconds"] += prepared_s  # method §6: training time includes the bottom's rows
        best = read_checkpoint(self.out / BEST_CHECKPOINT)
        resumed_in_export = any(key.startswith("bottom.") for key in best)
        target = network if resumed_in_export else top
        check_weights(best, target, self.out / BEST_CHECKPOINT)
        target.load_state_dict(best)
        network.cpu()
        save_checkpoint(network.state_dict(), self.out / BEST_CHECKPOINT)
        return export_and_evaluate(
            network,
            data,
            config=c,
            out=self.out,
            model_params=self.model_params,
            train_counts=train_counts,
            state=state,
            progress=self.progress,
            one_view=network.one_view() if network.cyclic else None,
        )

    def _optimizer(self, top: Top, data: PreparedData) -> torch.optim.Optimizer:
        groups = top.parameter_groups(self.config.learning_rate, len(data.train_index))
        return self.optimizer(groups)

    def _trial_steps(self, network: TopTuned, data: PreparedData) -> dict[str, Step]:
        """Training steps of the top, in each precision, on the bottom's rows of the first
        batch of training images."""
        index = data.train_index[: self.config.batch_size]
        x = to_device(torch.from_numpy(data.images[index]), self.device)
        bottom = network.bottom.to(self.device).eval()
        with torch.inference_mode():
            rows = bottom(x).float()
        top = network.top.to(self.device)
        y = torch.from_numpy(data.labels[index]).to(self.device)
        return training_steps(top, self._optimizer(top, data), rows.clone(), y)

    def _rows(self, network: TopTuned, data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
        """The bottom's rows, float16: of the training images (n, V, D) in the views of
        :func:`view_numbers`; of the validation images (m, D) as they lie (see
        :meth:`_batches`)."""
        c = self.config
        bottom = network.bottom.to(self.device).to(memory_format=torch.channels_last)
        width = network.bottom.features
        spec = ExtractorSpec(
            backbone=self.backbone,
            weights_sha256=file_sha256(self.weights),
            preprocessing=PreprocessSpec(size=c.input_size, channels=c.channels).to_dict(),
            cyclic=False,
            pool="none",
            precision="bf16" if self.features_bf16 else "fp32",
            output=f"maps@{network.top.split}",
        )
        hashes = [image_sha256(p) for p in data.paths]
        train_hashes = [hashes[i] for i in data.train_index]
        val_hashes = [hashes[i] for i in data.val_index]
        views = view_numbers(mirror=c.flips, augmented=c.augmented_copies)
        train = np.lib.format.open_memmap(
            self.rows_file,
            mode="w+",
            dtype=np.float16,
            shape=(len(train_hashes), len(views), width),
        )
        validation = np.empty((len(val_hashes), width), dtype=np.float16)
        computed, seconds = 0, 0.0
        with FeatureCache.open(
            self.cache_root,
            spec,
            dim=width,
            weights_path=self.weights,
            notify=lambda m: self.progress.message(m, warning=True),
        ) as cache:
            self.cache_folder = cache.folder
            extract = self._extractors.pop(spec.precision, None) or FrozenFeatures(
                bottom, device=self.device, bf16=self.features_bf16
            )
            self._extractors.clear()  # the trial's other extractor
            jobs = [(data.val_index, val_hashes, 0, validation)]
            jobs += [
                (data.train_index, train_hashes, copy, train[:, k]) for k, copy in enumerate(views)
            ]
            for index, job_hashes, copy, out in jobs:
                _, n, s = cached_features(
                    cache,
                    extract,
                    _Selection(data.images, index),
                    job_hashes,
                    copy=copy,
                    make_copy=view,
                    dtype=np.float16,
                    what=_view_name(copy, validation=out is validation),
                    out=out,
                    progress=self.progress,
                )
                computed, seconds = computed + n, seconds + s
        rebuilt = cache.bad_rows  # read back damaged: computed again and replaced
        total = len(hashes) + (len(views) - 1) * len(train_hashes)
        self.progress.message(
            f"Bottom rows: {total - computed} from the cache, {computed} computed"
            + (f" ({computed / seconds:.1f} images/s)" if computed else "")
            + (f", {rebuilt} damaged row(s) rebuilt" if rebuilt else "")
            + f"; cache {self.cache_folder}"
        )
        network.bottom.cpu()
        return train, validation

    def _batches(
        self, top: Top, train_rows: torch.Tensor, val_rows: torch.Tensor, data: PreparedData
    ) -> Batches:
        """Training rows in a random view per image (a turn or an augmented copy);
        validation on the images as they lie.

        Validating on the four turns' mean, as the exported network answers, 1 024 rows a
        batch, took about a quarter of the run's time on 84 plankton classes (the top's
        forward pass over every turn of every validation image, each epoch); one view in
        batches of :data:`VALIDATION_BATCH` costs a tenth of that. The
        best epoch is chosen on the images as they lie; the evaluation of the exported
        network averages the turns."""
        device = self.device
        val_y = torch.from_numpy(data.labels[data.val_index]).to(device)

        def prepare(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            view = torch.randint(0, x.shape[1], (len(x),), generator=generator)
            return x[torch.arange(len(x)), view].to(device).float()

        @torch.no_grad()
        def validate(module: torch.nn.Module) -> tuple[float, float]:
            if not len(val_y):
                return float("nan"), float("nan")
            module.eval()
            out = []
            for start in range(0, len(val_rows), VALIDATION_BATCH):
                batch = val_rows[start : start + VALIDATION_BATCH].to(device).float()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    out.append(module(batch).float())
            log_probs = torch.log_softmax(torch.cat(out), dim=1)
            accuracy = float((log_probs.argmax(1) == val_y).float().mean())
            return float(F.nll_loss(log_probs, val_y)), accuracy

        return Batches(
            module=top,
            train_x=train_rows,
            train_y=torch.from_numpy(data.labels[data.train_index]),
            validate=validate,
            prepare=prepare,
            device=device,
            bf16=self.bf16,
        )
