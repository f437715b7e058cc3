"""Fine-tuning the top of a pretrained EfficientNet-Lite on cached maps of its frozen bottom.

Fine-tuning a whole backbone on a CPU costs its forward and backward pass per image and
epoch: hours. Most of that goes into the first stages, at high resolution, whose ImageNet
filters (edges, blobs, textures) serve plankton and forams as they are. So the network is
split in two:

* the *bottom* (stem and every stage but the last four) stays frozen; it runs once per
  training image and turn, and its output maps (40 × 20 × 20 for Lite0 at 160 px, the default) are
  cached on disk;
* the *top* (the last four stages, the head convolution and the transfer tail) trains on
  those maps, so no epoch repeats the bottom's work. Its depthwise filters keep their
  ImageNet weights (see :func:`_freeze_depthwise`).

Four trained stages learn more than two or three (docs/decisions.md); at 160 px their input
takes 128 kB an image for the four turns' maps, which the training run memory-maps.

The top's features are the last layer pooled beside the pooled outputs of the last four
stages (as the transfer head's ``stages``) and of the maps it starts from, standardised
with the training set's mean and spread, then the transfer tail (dense 512, dense 512,
classes). Batch-norm statistics stay ImageNet's.

Rotation: the four 90° turns of each image are cached; each training step shows the top
one of them at random (augmentation at no cost), and the network answers with the mean of
the four turns' probabilities, so that its answer does not depend on how the specimen lay.
Its output is the log of that mean: softmax gives the mean back. Without ``cyclic`` it
reads the image once, as it lies: four times faster to run, a little less accurate.

With ``mirror`` (``--flips``), for specimens without a handedness (most plankton; not
forams, whose coiling direction is a trait), the mirror image's four turns join the
views: training draws from eight, and the answer is the mean of the eight, the same
whichever way the specimen lay or faced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from foramflow.errors import InvalidInput
from foramflow.models.backbones import EfficientNetLiteFeatures, get_backbone
from foramflow.models.cyclic import N_PATHS, cyclic_slice
from foramflow.models.transfer import TAIL_DROPOUT, TransferTail

TRAINED_STAGES = 4  # the last stages that train, with the head convolution
#: The top stages' learning rate relative to the tail's, from :data:`LARGE_SET` training
#: images on: large sets can move the pretrained filters further (docs/decisions.md).
TOP_RATE = 0.5
#: On fewer training images the pretrained filters are worth more than what the images can
#: teach them, so they move more slowly.
SMALL_SET_TOP_RATE = 0.2
LARGE_SET = 1000


def top_rate(n_training_images: int) -> float:
    """The top stages' learning rate relative to the tail's for a set of this size."""
    return TOP_RATE if n_training_images >= LARGE_SET else SMALL_SET_TOP_RATE


def _frozen_norms(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.eval()


def _freeze_depthwise(blocks: nn.ModuleList) -> None:
    """The trained stages' depthwise filters keep their ImageNet weights: on a CPU their
    weight gradients cost more than the rest of the backward pass, and training them gave
    the same accuracy (docs/decisions.md)."""
    for block in blocks:
        block._depthwise_conv.weight.requires_grad_(False)


def _cpu_bf16(x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and (torch.get_autocast_dtype("cpu") == torch.bfloat16)
    )


def _strided(block: nn.Module) -> bool:
    return block._depthwise_conv.stride[0] > 1 and not block.has_se


def _block_subsampled(block: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """An EfficientNet-Lite block (MBConv without squeeze-excitation, frozen depthwise
    filters) whose strided depthwise convolution is computed at stride 1 and subsampled:
    the same values, but PyTorch's bf16 gradient of a strided depthwise convolution on a
    CPU took ten times as long, two such layers a third of a training step
    (docs/decisions.md)."""
    x = inputs
    if block._block_args.expand_ratio != 1:
        x = block._swish(block._bn0(block._expand_conv(x)))
    conv = block._depthwise_conv
    step = conv.stride
    x = F.conv2d(conv.static_padding(x), conv.weight, conv.bias, 1, conv.padding, conv.dilation,
                 conv.groups)[:, :, :: step[0], :: step[1]]  # fmt: skip
    x = block._swish(block._bn1(x))
    return block._bn2(block._project_conv(x))  # strided: no skip connection


class Bottom(nn.Module):
    """The frozen part: image (B, C, S, S) in [0, 1] → one flat row per image, the stage
    maps at the split (flattened) followed by the pooled outputs of earlier stages."""

    cyclic = False  # one view per row: what the feature cache's batch sizing needs to know

    def __init__(
        self, features: EfficientNetLiteFeatures, info, split: int, pooled_ends, input_size: int
    ):
        super().__init__()
        net = features.net
        self.register_buffer("mean", torch.tensor(info.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(info.std).view(1, 3, 1, 1))
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[:split])
        self.pooled_ends = frozenset(pooled_ends)
        self.requires_grad_(False)
        self.eval()
        with torch.no_grad():
            maps, pooled = self.maps_and_pooled(torch.zeros(1, 3, input_size, input_size))
        self.map_shape = tuple(maps.shape[1:])
        self.n_pooled = sum(p.shape[1] for p in pooled)
        self.features = maps[0].numel() + self.n_pooled  # the length of a row

    def train(self, mode: bool = True) -> Bottom:
        """Always in eval mode: it never trains."""
        return super().train(False)

    def maps_and_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.stem((x - self.mean) / self.std)
        pooled = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.pooled_ends:
                pooled.append(x.mean(dim=(2, 3)))
        return x, pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps, pooled = self.maps_and_pooled(x)
        return torch.cat([maps.flatten(1), *pooled], dim=1)


class Top(nn.Module):
    """The trained part: a row of :class:`Bottom` → logits (B, K)."""

    def __init__(
        self,
        features: EfficientNetLiteFeatures,
        split: int,
        pooled_ends,
        map_shape: Sequence[int],
        n_pooled_below: int,
        n_classes: int,
        *,
        dense: int,
        dropout: Sequence[float],
    ):
        super().__init__()
        net = features.net
        self.map_shape = tuple(map_shape)
        self.map_size = math.prod(self.map_shape)
        self.split = split
        self.blocks = nn.ModuleList(net._blocks[split:])
        _freeze_depthwise(self.blocks)
        self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)
        self.pooled_ends = frozenset(pooled_ends)
        width = n_pooled_below + self.map_shape[0] + net._conv_head.out_channels
        width += sum(net._blocks[i]._project_conv.out_channels for i in self.pooled_ends)
        self.register_buffer("centre", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.tail = TransferTail(width, n_classes, dense=dense, dropout=dropout)
        # the filters in the layout of the maps they read: in bf16 on a CPU, training steps
        # with filters in the other layout ran at two thirds of the speed (docs/decisions.md)
        self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> Top:
        """Batch-norm statistics stay ImageNet's: the small batches a CPU affords are noisy
        (training them on batches of 64 gave 77.1 % against 78.4 % on 84 plankton classes)."""
        super().train(mode)
        _frozen_norms(self)
        return self

    def features(self, rows: torch.Tensor) -> torch.Tensor:
        """The pooled, standardised feature vector the tail reads, from bottom rows."""
        maps = rows[:, : self.map_size].unflatten(1, self.map_shape)
        below = [rows[:, self.map_size :]] if rows.shape[1] > self.map_size else []
        return self.features_of(maps.contiguous(memory_format=torch.channels_last), below)

    def features_of(self, maps: torch.Tensor, pooled_below: Sequence[torch.Tensor]) -> torch.Tensor:
        """:meth:`features` from the bottom's maps and the pooled vectors of the stages
        below them (none when the split follows the fourth stage from the end)."""
        x = maps
        pooled = [*pooled_below, x.mean(dim=(2, 3))]
        subsample = self.training and _cpu_bf16(x)
        for i, block in enumerate(self.blocks, start=self.split):
            x = _block_subsampled(block, x) if subsample and _strided(block) else block(x)
            if i in self.pooled_ends:
                pooled.append(x.mean(dim=(2, 3)))
        pooled.append(self.head(x).mean(dim=(2, 3)))
        return (torch.cat(pooled, dim=1) - self.centre) / self.scale

    @torch.no_grad()
    def standardise(self, rows: torch.Tensor, batch_size: int = 256) -> None:
        """Centre and scale the features by their mean and spread over ``rows``."""
        was_training = self.training
        self.eval()
        self.centre.zero_()
        self.scale.fill_(1.0)
        vectors = torch.cat(
            [
                self.features(rows[s : s + batch_size].float())
                for s in range(0, len(rows), batch_size)
            ]
        )
        self.centre.copy_(vectors.mean(0))
        self.scale.copy_(vectors.std(0) + 1e-3)
        self.train(was_training)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.tail(self.features(rows))

    def parameter_groups(self, learning_rate: float, n_training_images: int) -> list[dict]:
        """The backbone's stages at :func:`top_rate` of ``learning_rate``, the tail at it."""
        backbone = [
            p for p in [*self.blocks.parameters(), *self.head.parameters()] if p.requires_grad
        ]
        return [
            {"params": backbone, "lr": learning_rate * top_rate(n_training_images)},
            {"params": self.tail.parameters(), "lr": learning_rate},
        ]


def mean_of_views(logits: torch.Tensor, views: int = N_PATHS) -> torch.Tensor:
    """(V·B, K) logits of V views, view-major → (B, K) log of their mean probability."""
    log_probs = torch.log_softmax(logits, dim=1).unflatten(0, (views, -1))
    return torch.logsumexp(log_probs, dim=0) - math.log(views)


def dihedral_views(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (8·B, C, H, W): the four turns of the image, then of its mirror image."""
    return torch.cat([cyclic_slice(x), cyclic_slice(x.flip(-1))], dim=0)


class TopTuned(nn.Module):
    """Bottom and top joined, the form a bundle exports: (B, C, S, S) in [0, 1] → the log
    of the mean probability over the four 90° turns (B, K), with ``mirror`` over those of
    the mirror image too, or with ``cyclic=False`` the logits of the image as it lies (a
    quarter of the work; rotation then rests on training with every turn)."""

    def __init__(self, bottom: Bottom, top: Top, *, cyclic: bool = True, mirror: bool = False):
        super().__init__()
        self.bottom, self.top, self.cyclic, self.mirror = bottom, top, cyclic, mirror

    @property
    def views(self) -> int:
        """How many views of an image the network answers from."""
        return (2 * N_PATHS if self.mirror else N_PATHS) if self.cyclic else 1

    def one_view(self) -> TopTuned:
        """The same network reading the image once, as it lies: training shows the top one
        view at a time, so its weights serve both forms."""
        return TopTuned(self.bottom, self.top, cyclic=False)

    @property
    def tail(self) -> TransferTail:
        """The layer whose bias logit adjustment moves (see :mod:`foramflow.training.prior`)."""
        return self.top.tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cyclic:
            x = dihedral_views(x) if self.mirror else cyclic_slice(x)
        maps, pooled = self.bottom.maps_and_pooled(x)  # no flattening into rows
        logits = self.top.tail(self.top.features_of(maps, pooled))
        return mean_of_views(logits, self.views) if self.cyclic else logits


def split_backbone(
    backbone: str,
    *,
    n_classes: int,
    input_size: int,
    weights: str | Path | None,
    cyclic: bool = True,
    mirror: bool = False,
    dense: int = 512,
    dropout: Sequence[float] = TAIL_DROPOUT,
) -> TopTuned:
    """EfficientNet-Lite ``backbone`` split before its last :data:`TRAINED_STAGES` stages."""
    info = get_backbone(backbone)
    features = info.build(input_size=input_size, weights=weights)
    if not isinstance(features, EfficientNetLiteFeatures):
        raise InvalidInput(
            f"{backbone}: only EfficientNet-Lite backbones split into bottom and top"
        )
    ends = sorted(features._stage_ends)  # the last four stages' final blocks
    split = features.all_stage_ends[-TRAINED_STAGES - 1] + 1
    below = [i for i in ends if i < split - 1]  # pooled in the bottom; the split's own maps
    above = [i for i in ends if i >= split]  # are pooled by the top
    bottom = Bottom(features, info, split, below, input_size)
    top = Top(
        features,
        split,
        above,
        bottom.map_shape,
        bottom.n_pooled,
        n_classes,
        dense=dense,
        dropout=dropout,
    )
    return TopTuned(bottom, top, cyclic=cyclic, mirror=mirror)


def top_tune_builder(backbone: str):
    """A registry ``build`` function: ``backbone`` split, its top fine-tuned."""

    def build(
        *,
        n_classes: int,
        input_size: int,
        channels: int,
        cyclic: bool = True,
        mirror: bool = False,
        dense: int = 512,
        dropout: Sequence[float] = TAIL_DROPOUT,
        weights: str | Path | None = None,
    ) -> TopTuned:
        del channels  # the bottom takes grey and colour alike
        weights = weights or get_backbone(backbone).default_weights()
        return split_backbone(
            backbone,
            n_classes=n_classes,
            input_size=input_size,
            weights=weights,
            cyclic=cyclic,
            mirror=mirror,
            dense=dense,
            dropout=dropout,
        )

    build.__name__ = f"{backbone}_top_tune"
    build.backbone = backbone
    return build
