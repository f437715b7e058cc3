"""Networks registered by name with their defaults; one factory, :func:`create_model`.

Each entry records what a run needs to know before building the network: whether it
trains end to end on augmented images (``full``), on cached features (``transfer``) or
its top on cached maps of its frozen bottom (``top``),
its default input size (what a run uses unless told otherwise) and its default
parameters. This is the one place those defaults are written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from foramflow.errors import InvalidInput

#: How the paper trains its networks: Adam, ALRS, cross-entropy weighted by class, no
#: weight average.
PAPER_RECIPE = {
    "optimizer": "adam",
    "schedule": "alrs",
    "label_smoothing": 0.0,
    "ema": 0.0,
    "class_weights": "clamped",
    "min_per_class": 40,
}
#: Transfer learning: a tail on frozen features learns from a handful of images per class,
#: so smaller classes are kept. The paper's ALRS watches the training loss, which a tail on
#: fixed vectors drives down while it overfits; a fixed cosine schedule stops in time, and
#: without class weights the tail's accuracy and mean recall are both higher
#: (docs/decisions.md).
TRANSFER_RECIPE = {
    "optimizer": "adamw",
    "schedule": "cosine",
    "epochs": 30,
    "label_smoothing": 0.1,
    "ema": 0.0,
    "class_weights": "none",
    "min_per_class": 10,
}

#: The top of a backbone fine-tuned on cached maps of its frozen bottom: a short cosine
#: schedule, since longer training and a moving average of the weights added nothing
#: (docs/decisions.md).
TOP_RECIPE = {
    "optimizer": "adamw",
    "schedule": "cosine",
    "epochs": 8,
    "label_smoothing": 0.1,
    "ema": 0.0,
    "class_weights": "none",
    "min_per_class": 10,
}
#: The top reads 160 px, not Lite0's 128: the finer detail is worth about a point of top-1,
#: for more training time and less classify speed (docs/decisions.md).
TOP_INPUT_SIZE = 160


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]
    description: str
    default_input_size: int
    kind: str = "full"
    defaults: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=lambda: dict(PAPER_RECIPE))


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInput(
            f"unknown model {name!r}; choose one of {', '.join(model_names())}"
        ) from None


def create_model(
    name: str, *, n_classes: int, input_size: int, channels: int, **params
) -> nn.Module:
    """Build the network ``name`` with its registered defaults overridden by ``params``."""
    entry = get_entry(name)
    kwargs = {**entry.defaults, **params}
    return entry.build(n_classes=n_classes, input_size=input_size, channels=channels, **kwargs)


def build_full_network(
    name: str, *, n_classes: int, input_size: int, channels: int, offered: dict
) -> tuple[nn.Module, dict]:
    """The network ``name``, trained end to end, built with those of the ``offered`` options
    it takes (its defaults for the rest), and those options as the bundle records them. A
    pretrained backbone gets its ImageNet weights, never a random start."""
    from foramflow.models.backbones import resolve_weights

    entry = get_entry(name)
    if entry.kind != "full":
        raise InvalidInput(f"model {name!r} is trained on cached features, not end to end")
    taken = {key: value for key, value in offered.items() if key in entry.defaults}
    backbone = getattr(entry.build, "backbone", None)
    if backbone:
        taken["weights"] = str(resolve_weights(backbone, offered.get("weights")))
    network = create_model(
        name, n_classes=n_classes, input_size=input_size, channels=channels, **taken
    )
    return network, taken


def _register_papers_networks() -> None:
    """The paper's networks and a plain baseline, trained from scratch."""
    from foramflow.models.base_cyclic import BaseCyclic
    from foramflow.models.resnet import ResNet18
    from foramflow.models.resnet_cyclic import ResNetCyclic

    register(
        ModelEntry(
            "base_cyclic",
            BaseCyclic,
            "the paper's Base-Cyclic: plain conv blocks with cyclic slice/roll/pool",
            default_input_size=128,
            defaults={"filters": 8, "pool": "max", "dropout": 0.5, "dense": 512},
        )
    )
    register(
        ModelEntry(
            "resnet_cyclic",
            ResNetCyclic,
            "Base-Cyclic with residual blocks",
            default_input_size=128,
            defaults={"filters": 8, "pool": "max", "dropout": 0.5, "dense": 512},
        )
    )
    register(
        ModelEntry(
            "resnet18",
            ResNet18,
            "plain ResNet18 baseline (no cyclic layers)",
            default_input_size=128,
        )
    )


def _register_pretrained() -> None:
    """Transfer learning and fine-tuning of the ImageNet backbones."""
    from foramflow.models.backbones import get_backbone
    from foramflow.models.finetune import FINE_TUNE_RECIPE, fine_tune_builder
    from foramflow.models.top_tuned import top_tune_builder
    from foramflow.models.transfer import TAIL_DROPOUT, transfer_builder

    transfer_defaults = {"cyclic": True, "pool": "max", "dense": 512, "dropout": TAIL_DROPOUT}
    fine_tune_defaults = {"cyclic": True, "pool": "max", "dropout": 0.2, "weights": None}
    for variant in (0, 1, 2):
        backbone = f"efficientnet_lite{variant}"
        register(
            ModelEntry(
                f"{backbone}_tl",
                transfer_builder(backbone),
                f"transfer learning: EfficientNet-Lite{variant} (ImageNet, installed) head, "
                "small tail",
                default_input_size=get_backbone(backbone).default_input_size,
                kind="transfer",
                defaults=transfer_defaults,
                recipe=dict(TRANSFER_RECIPE),
            )
        )
        register(
            ModelEntry(
                f"{backbone}_ft",
                fine_tune_builder(backbone),
                f"fine-tuning: EfficientNet-Lite{variant} (ImageNet, installed) end to end",
                default_input_size=get_backbone(backbone).default_input_size,
                defaults=fine_tune_defaults,
                recipe=dict(FINE_TUNE_RECIPE),
            )
        )
        register(
            ModelEntry(
                f"{backbone}_top",
                top_tune_builder(backbone),
                f"fine-tuning the top: EfficientNet-Lite{variant} (ImageNet, installed), its "
                "last four stages trained on cached maps of the frozen others",
                default_input_size=TOP_INPUT_SIZE,
                kind="top",
                defaults={
                    "cyclic": True,
                    "mirror": False,
                    "dense": 512,
                    "dropout": TAIL_DROPOUT,
                    "weights": None,
                },
                recipe=dict(TOP_RECIPE),
            )
        )
    register(
        ModelEntry(
            "resnet50_tl",
            transfer_builder("resnet50"),
            "transfer learning: ResNet50 head (torchvision ImageNet weights, --weights)",
            default_input_size=get_backbone("resnet50").default_input_size,
            kind="transfer",
            defaults=transfer_defaults,
            recipe=dict(TRANSFER_RECIPE),
        )
    )

    register(
        ModelEntry(
            "resnet50_ft",
            fine_tune_builder("resnet50"),
            "fine-tuning: ResNet50 (torchvision ImageNet weights, --weights) end to end",
            default_input_size=get_backbone("resnet50").default_input_size,
            defaults=fine_tune_defaults,
            recipe=dict(FINE_TUNE_RECIPE),
        )
    )


_register_papers_networks()
_register_pretrained()
