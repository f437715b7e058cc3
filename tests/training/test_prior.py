"""Logit adjustment: class weights divided out of a network's outputs, known answers."""

import numpy as np
import pytest
import torch
from torch import nn

from foramflow.training.prior import as_trained, divide_out_class_weights, final_layer


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(2, 3)

    def forward(self, x):
        return self.classifier(x)


def test_dividing_out_weights_gives_the_known_posterior():
    torch.manual_seed(0)
    network, x = Tiny(), torch.randn(5, 2)
    weights = np.array([0.5, 2.0, 4.0])
    before = torch.softmax(network(x), 1).detach().numpy()
    divide_out_class_weights(network, weights)
    after = torch.softmax(network(x), 1).detach().numpy()
    expected = before / weights
    expected /= expected.sum(1, keepdims=True)
    assert np.allclose(after, expected, atol=1e-6)
    assert np.allclose(as_trained(after, weights), before, atol=1e-6)


def test_a_known_prior_shift_is_undone():
    """A weighted loss makes p_w(k|x) ∝ w_k p(k|x): dividing w out recovers p(k|x)."""
    posterior = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    weights = np.array([0.2, 1.0, 5.0])
    learned = posterior * weights
    learned /= learned.sum(1, keepdims=True)
    network = Tiny()
    with torch.no_grad():
        network.classifier.weight.zero_()
        network.classifier.bias.copy_(torch.tensor(np.log(learned[0]), dtype=torch.float32))
    divide_out_class_weights(network, weights)
    recovered = torch.softmax(network(torch.zeros(1, 2)), 1).detach().numpy()[0]
    assert np.allclose(recovered, posterior[0], atol=1e-6)


def test_the_transfer_tail_and_fine_tuned_networks_have_a_final_layer():
    from foramflow.models.registry import create_model

    for name in (
        "base_cyclic",
        "efficientnet_lite0_tl",
        "efficientnet_lite0_ft",
        "efficientnet_lite0_top",
        "resnet18",
    ):
        network = create_model(name, n_classes=3, input_size=32, channels=1)
        assert final_layer(network).out_features == 3
    with pytest.raises(TypeError):
        final_layer(nn.Sequential(nn.Linear(2, 2)))


def test_a_run_on_an_imbalanced_set_exports_the_corrected_network(tmp_path):
    from foramflow.bundle import Bundle
    from foramflow.training.rebuild import rebuild_bundle
    from foramflow.training.step import train
    from image_sets import write_shape_set

    data = write_shape_set(tmp_path / "data", n_per_class=30, size=24)
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    for extra in sorted((data / classes[0]).iterdir())[12:]:
        extra.unlink()  # 12 images against 30: the first class weighs more
    result = train(
        data, tmp_path / "run", model="base_cyclic", input_size=16, epochs=2, batch_size=16,
        min_per_class=5, workers=1, precision="fp32",
    )  # fmt: skip
    bundle = Bundle.load(result.bundle)
    weights = bundle.meta.prior_correction.class_weights
    assert weights[classes[0]] > 1 > weights[classes[1]]
    assert set(result.metrics["as_trained"]) >= {"accuracy", "macro_recall"}
    again = Bundle.load(rebuild_bundle(tmp_path / "run", tmp_path / "again"))
    x = np.random.default_rng(0).random((4, 1, 16, 16)).astype(np.float32)
    assert np.allclose(again.predict_batch(x), bundle.predict_batch(x), atol=1e-5)
