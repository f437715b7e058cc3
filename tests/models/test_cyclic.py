import pytest
import torch

from foramflow.models.base_cyclic import block_count
from foramflow.models.cyclic import (
    cyclic_pool,
    cyclic_roll,
    cyclic_slice,
    roll_by_concatenation,
)
from foramflow.models.registry import create_model, model_names


@pytest.mark.parametrize(("width", "blocks"), [(64, 4), (128, 5), (256, 6)])
def test_block_count(width, blocks):
    assert block_count(width) == blocks


@pytest.mark.parametrize("name", ["base_cyclic", "resnet_cyclic"])
@pytest.mark.parametrize("pool", ["max", "mean"])
def test_cyclic_networks_are_invariant_to_right_angle_rotations(name, pool):
    torch.manual_seed(0)
    network = create_model(name, n_classes=4, input_size=32, channels=1, pool=pool).eval()
    torch.nn.init.normal_(network.classifier.weight)  # starts at zero: give it something to show
    x = torch.rand(3, 1, 32, 32)
    assert network(x).std() > 0.1
    with torch.no_grad():
        reference = network(x)
        for k in (1, 2, 3):
            rotated = network(torch.rot90(x, k, (2, 3)))
            assert torch.allclose(rotated, reference, atol=1e-5), f"{k * 90}°"


def test_plain_resnet_is_not_invariant():
    torch.manual_seed(0)
    network = create_model("resnet18", n_classes=4, input_size=32, channels=1).eval()
    torch.nn.init.normal_(network.classifier.weight)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(network(x), network(torch.rot90(x, 1, (2, 3))), atol=1e-4)


def test_roll_commutes_with_rotating_the_input():
    # Rotating the input by 90° shifts the four paths by one; roll must shift the same way.
    x = torch.rand(2, 3, 8, 8)
    paths = cyclic_slice(x)
    shifted = cyclic_slice(torch.rot90(x, 1, (2, 3)))
    rolled = cyclic_roll(paths).unflatten(0, (4, -1))
    rolled_shifted = cyclic_roll(shifted).unflatten(0, (4, -1))
    assert torch.equal(rolled_shifted, torch.roll(rolled, shifts=-1, dims=0))
    assert rolled.shape == (4, 2, 12, 8, 8)


def test_roll_slots_hold_each_path_turned_into_the_receivers_frame():
    x = torch.rand(4 * 2, 3, 5, 5)  # 4 paths × batch of 2, 3 channels
    rolled = cyclic_roll(x).unflatten(0, (4, -1))
    paths = x.unflatten(0, (4, -1))
    for i in range(4):
        for j in range(4):
            slot = rolled[i, :, 3 * j : 3 * (j + 1)]
            assert torch.equal(slot, torch.rot90(paths[(i + j) % 4], -j, (-2, -1))), (i, j)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_written_roll_matches_the_concatenated_roll_and_keeps_the_layout(layout):
    x = torch.rand(8, 3, 6, 6).contiguous(memory_format=layout)
    rolled = cyclic_roll(x)
    assert torch.equal(rolled, roll_by_concatenation(x))
    assert rolled.is_contiguous(memory_format=layout)


def test_written_roll_gradient_is_exact():
    x = torch.rand(8, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cyclic_roll, (x,))
    weights = torch.rand(8, 8, 5, 5, dtype=torch.float64)
    (grad,) = torch.autograd.grad((cyclic_roll(x) * weights).sum(), x)
    (expected,) = torch.autograd.grad((roll_by_concatenation(x) * weights).sum(), x)
    assert torch.allclose(grad, expected)


def test_pool_modes():
    x = torch.arange(8.0).reshape(8, 1)  # 4 paths × batch of 2
    assert torch.equal(cyclic_pool(x, "max"), torch.tensor([[6.0], [7.0]]))
    assert torch.equal(cyclic_pool(x, "mean"), torch.tensor([[3.0], [4.0]]))
    with pytest.raises(ValueError):
        cyclic_pool(x, "median")


def test_registry_factory():
    assert {"base_cyclic", "resnet_cyclic", "resnet18"} <= set(model_names())
    network = create_model("base_cyclic", n_classes=5, input_size=64, channels=3, filters=4)
    assert network(torch.rand(2, 3, 64, 64)).shape == (2, 5)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vgg99", n_classes=2, input_size=64, channels=1)


def test_classifier_starts_with_every_class_equally_likely():
    network = create_model("base_cyclic", n_classes=5, input_size=32, channels=1).eval()
    with torch.no_grad():
        probabilities = torch.softmax(network(torch.rand(2, 1, 32, 32)), dim=1)
        features = network.embed(torch.rand(2, 1, 32, 32))
    assert torch.allclose(probabilities, torch.full((2, 5), 0.2))
    assert features.abs().sum() > 0  # the features themselves are not zero
