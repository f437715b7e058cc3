"""Fine-tuning a pretrained backbone end to end: it learns a tiny set, rotations do not
change its answer, and the backbone trains at a tenth of the classifier's rate."""

import json

import pytest
import torch

from foramflow.models.finetune import BACKBONE_RATE
from foramflow.models.registry import create_model
from foramflow.training.config import TrainConfig
from foramflow.training.full import FullTrainer
from image_sets import write_shape_set


def test_fine_tuning_learns_a_tiny_set(tmp_path):
    data = write_shape_set(tmp_path / "data", n_per_class=16, size=32)
    config = TrainConfig(
        data=str(data),
        out=str(tmp_path / "run"),
        model="efficientnet_lite0_ft",
        input_size=32,
        epochs=6,
        batch_size=16,
        min_per_class=10,
        cyclic=False,
        learning_rate=3e-3,
        workers=1,
        precision="fp32",
    )
    assert (config.optimizer, config.schedule, config.label_smoothing) == ("adamw", "cosine", 0.1)
    FullTrainer(config).run()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.8  # three shapes; chance is a third


def test_the_cyclic_fine_tuned_network_ignores_quarter_turns():
    torch.manual_seed(0)
    network = create_model("efficientnet_lite0_ft", n_classes=4, input_size=32, channels=1)
    network.eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        turned = network(torch.rot90(x, 1, dims=(2, 3)))
        assert torch.allclose(network(x), turned, atol=1e-4)


def test_the_backbone_learns_at_a_tenth_of_the_classifiers_rate():
    network = create_model("efficientnet_lite0_ft", n_classes=3, input_size=32, channels=1)
    backbone, classifier = network.parameter_groups(1e-3)
    assert backbone["lr"] == pytest.approx(1e-3 * BACKBONE_RATE)
    assert classifier["lr"] == pytest.approx(1e-3)
    assert all(p.requires_grad for p in network.parameters())
