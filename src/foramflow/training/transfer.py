"""Transfer learning (method §4): cached head features, a small tail, one bundle.

A run: preprocess and split the set as the full networks do
(:func:`~foramflow.training.prepared.prepare_data`); compute each image's head vector once —
and optionally vectors of N augmented copies of each training image — through the feature
cache (:mod:`~foramflow.training.frozen_features`); train the tail on the vectors with the
same loss, class weights, batch size, Adam and ALRS schedule as the full networks; join
head and tail into one network and export, evaluate and report it as any other run
(:func:`export_and_evaluate`). The run folder is that of
:mod:`foramflow.training.run_folder`, with no ``checkpoint_last.pt``: a run that stops is
simply run again, and every vector already computed comes from the cache. The bundle also
holds the vectors of the labelled images (its reference features), for ``foramflow
similar`` (:mod:`foramflow.similar`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foramflow.bundle.folder import update_bundle_meta
from foramflow.bundle.schema import REFERENCE_FILE, RUN_BUNDLE, TransferInfo
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.models.backbones import file_sha256, resolve_weights
from foramflow.models.registry import create_model, get_entry
from foramflow.models.transfer import TAIL_DROPOUT, TransferHead, TransferNetwork
from foramflow.progress import Progress, Quiet
from foramflow.training.checkpoint import load_weights, save_checkpoint
from foramflow.training.config import TrainConfig
from foramflow.training.feature_cache import (
    ExtractorSpec,
    FeatureCache,
    ReferenceSet,
    default_cache_root,
    image_sha256,
)
from foramflow.training.finish import export_and_evaluate
from foramflow.training.fit import Batches, fit
from foramflow.training.frozen_features import FrozenFeatures, cached_features
from foramflow.training.prepared import PreparedData
from foramflow.training.run_folder import BEST_CHECKPOINT, LAST_CHECKPOINT, CannotResume
from foramflow.training.trainer import Trainer


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
        data = self.start()
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
        # the head's features may be bf16; the tail trains in fp32
        self.features_bf16 = self.settle_features_precision(head, data, "head's vectors")
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
            precision="bf16" if self.features_bf16 else "fp32",
            stages=c.stages,
            mirror=c.flips,
        )
        extract = self._extractors.pop(self.spec.precision, None) or FrozenFeatures(
            head, device=self.device, bf16=self.features_bf16
        )
        self._extractors.clear()  # the trial's other extractor
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
