import pytest
import torch

from foramflow.models.fused_paths import can_fuse_paths, fuse_paths
from foramflow.models.registry import create_model


def _trained_looking(name: str, size: int, pool: str = "max") -> torch.nn.Module:
    """A network whose every weight and batch-norm statistic is non-trivial."""
    torch.manual_seed(0)
    network = create_model(name, n_classes=5, input_size=size, channels=1, pool=pool)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
        torch.nn.init.normal_(network.classifier.weight)
    return network.eval()


@pytest.mark.parametrize(("size", "pool"), [(32, "max"), (64, "mean")])
def test_fused_network_computes_the_same_function(size, pool):
    network = _trained_looking("base_cyclic", size, pool)
    fused = fuse_paths(network)
    x = torch.rand(3, 1, size, size)
    with torch.no_grad():
        expected, got = network(x), fused(x)
    assert expected.abs().max() > 1  # logits far from zero: a real comparison
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-5)


def test_fused_network_has_no_rotations_and_stays_invariant():
    fused = fuse_paths(_trained_looking("base_cyclic", 32))
    names = {type(m).__name__ for m in fused.modules()}
    assert not names & {"CyclicSlice", "CyclicRoll", "CyclicPool"}
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        reference = fused(x)
        for k in (1, 2, 3):
            assert torch.allclose(fused(torch.rot90(x, k, (2, 3))), reference, atol=1e-4)


def test_networks_with_other_blocks_are_not_fused():
    assert can_fuse_paths(create_model("base_cyclic", n_classes=2, input_size=32, channels=1))
    resnet_cyclic = create_model("resnet_cyclic", n_classes=2, input_size=32, channels=1)
    assert not can_fuse_paths(resnet_cyclic)
    with pytest.raises(ValueError, match="cannot be fused"):
        fuse_paths(resnet_cyclic)
