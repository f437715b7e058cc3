import pytest
import torch

from foramflow.models.fused_paths import _CentredConv, can_fuse_paths, fuse_paths, typical_input
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


def _bright_image(size: int = 32) -> torch.Tensor:
    """A dark blob on a bright, slightly noisy background, as in shadowgraph plankton."""
    torch.manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = ((yy - size / 2) ** 2 + (xx - size / 3) ** 2 < (size / 5) ** 2).float()
    return (0.93 - 0.6 * blob + 0.02 * torch.randn(size, size)).clamp(0, 1)[None, None]


def test_typical_input_is_read_back_from_batch_norm():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False)
    norm = torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        norm.running_mean.copy_(conv.weight.sum(dim=(1, 2, 3)) * 0.9)  # E[conv(x)] for x ≡ 0.9
    assert typical_input(conv, norm) == pytest.approx(0.9, abs=1e-6)


def test_centred_conv_is_the_same_function_and_rounds_better_in_bf16():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 8, 3, padding=1, bias=True)
    with torch.no_grad():
        centred = _CentredConv(conv, 0.93)  # the background level
        x = _bright_image()
        exact = conv(x)
        assert torch.allclose(centred(x), exact, atol=1e-5)  # borders included

        def bf16(t):
            return t.bfloat16().float()

        # bf16 inference: weights and inputs rounded, bias and sums in fp32 (as oneDNN does)
        plain = torch.nn.functional.conv2d(bf16(x), bf16(conv.weight), conv.bias, padding=1)
        padded = torch.nn.functional.pad(x - 0.93, (1,) * 4, value=-0.93)
        shifted = torch.nn.functional.conv2d(
            bf16(padded), bf16(centred.conv.weight), centred.conv.bias
        )
    # The rounding of the weights shifts every background pixel alike in the plain form.
    plain_error = (plain - exact).abs().mean()
    centred_error = (shifted - exact).abs().mean()
    assert plain_error > 5e-4
    assert centred_error < plain_error / 3


def test_fused_first_convolution_is_centred_on_the_training_images():
    network = _trained_looking("base_cyclic", 32)
    first_conv, first_norm = network.features[1], network.features[2]
    with torch.no_grad():
        first_norm.running_mean.copy_(first_conv.weight.sum(dim=(1, 2, 3)) * 0.93)
    fused = fuse_paths(network)
    assert isinstance(fused.features[0], _CentredConv)
    assert fused.features[0].offset == pytest.approx(0.93, abs=1e-4)
    x = _bright_image().repeat(2, 1, 1, 1)
    with torch.no_grad():
        assert torch.allclose(fused(x), network(x), atol=1e-4, rtol=1e-5)
