"""The split backbone: the same function as the whole one, invariant to 90° turns."""

import numpy as np
import pytest
import torch

from foramflow.models import top_tuned
from foramflow.models.backbones import get_backbone
from foramflow.models.cyclic import cyclic_slice
from foramflow.models.top_tuned import (
    _block_subsampled,
    _strided,
    dihedral_views,
    mean_of_views,
    split_backbone,
)
from foramflow.models.transfer import pretrained_head

SIZE = 64


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    weights = get_backbone("efficientnet_lite0").default_weights()  # the installed ImageNet
    return split_backbone(
        "efficientnet_lite0", n_classes=5, input_size=SIZE, weights=weights
    ).eval()


def test_bottom_then_top_pools_what_the_whole_backbone_pools(network):
    """Split or not, the features are the last layer and the last four stages, pooled; the
    top pools the maps it starts from (the fifth stage from the end) before them."""
    head = pretrained_head(
        "efficientnet_lite0", SIZE, cyclic=False, pool="max", stages=True, weights=None
    )
    x = torch.rand(3, 1, SIZE, SIZE)
    with torch.no_grad():
        whole = head(x)
        split = network.top.features(network.bottom(x))
    start = network.bottom.map_shape[0]
    assert split.shape[1] == start + whole.shape[1]
    torch.testing.assert_close(split[:, start:], whole, atol=1e-5, rtol=1e-4)


def test_answer_does_not_depend_on_how_the_image_lies(network):
    x = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        answers = [network(torch.rot90(x, k, (2, 3))) for k in range(4)]
    for answer in answers[1:]:
        torch.testing.assert_close(answer, answers[0], atol=1e-5, rtol=1e-5)


def test_output_is_the_log_of_the_four_turns_mean_probability(network):
    x = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        per_turn = torch.softmax(network.top(network.bottom(cyclic_slice(x))), 1)
        expected = per_turn.unflatten(0, (4, -1)).mean(0)
        torch.testing.assert_close(torch.softmax(network(x), 1), expected)
    logits = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])  # 4 turns, B=1
    mean = mean_of_views(logits).exp()
    np.testing.assert_allclose(mean.sum().item(), 1.0, rtol=1e-6)
    assert mean[0, 0].item() == pytest.approx(mean[0, 1].item())


def test_only_the_top_trains_but_its_depthwise_filters_and_batch_norm_statistics(network):
    """The top's depthwise filters and every batch norm's statistics stay ImageNet's."""
    assert not any(p.requires_grad for p in network.bottom.parameters())
    depthwise = {id(block._depthwise_conv.weight) for block in network.top.blocks}
    assert depthwise
    for p in network.top.parameters():
        assert p.requires_grad == (id(p) not in depthwise)
    groups = network.top.parameter_groups(1e-3, n_training_images=100)
    trained = {id(p) for group in groups for p in group["params"]}
    assert trained == {id(p) for p in network.top.parameters() if p.requires_grad}
    network.train()
    norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert network.top.tail.training
    network.eval()


def test_the_top_stages_learn_more_gently_on_a_small_set(network):
    """The tail at the given rate; the stages at half of it from a thousand training images
    on, at a fifth below."""
    for n_images, stage_rate in ((999, 2e-4), (1000, 5e-4), (16_400, 5e-4)):
        stages, tail = network.top.parameter_groups(1e-3, n_training_images=n_images)
        assert stages["lr"] == pytest.approx(stage_rate) and tail["lr"] == 1e-3
        assert {id(p) for p in tail["params"]} == {id(p) for p in network.top.tail.parameters()}


def test_standardised_features_have_zero_mean_and_unit_spread(network):
    rows = network.bottom(torch.rand(16, 1, SIZE, SIZE)).detach()
    network.top.standardise(rows)
    with torch.no_grad():
        features = network.top.features(rows)
    torch.testing.assert_close(features.mean(0), torch.zeros(features.shape[1]), atol=1e-4, rtol=0)
    assert float(features.std(0).max()) <= 1.0 + 1e-4


def test_without_cyclic_the_image_is_read_once_as_it_lies(network):
    x = torch.rand(2, 1, SIZE, SIZE)
    network.cyclic = False
    try:
        with torch.no_grad():
            torch.testing.assert_close(network(x), network.top(network.bottom(x)))
    finally:
        network.cyclic = True


def test_with_mirror_the_answer_is_the_eight_views_mean_whichever_way_the_image_lies(network):
    x = torch.rand(2, 1, SIZE, SIZE)
    network.mirror = True
    try:
        with torch.no_grad():
            answer = network(x)
            per_view = torch.softmax(network.top(network.bottom(dihedral_views(x))), 1)
            expected = per_view.unflatten(0, (8, -1)).mean(0)
            torch.testing.assert_close(torch.softmax(answer, 1), expected)
            for k in range(4):
                for image in (torch.rot90(x, k, (2, 3)), torch.rot90(x.flip(-1), k, (2, 3))):
                    torch.testing.assert_close(network(image), answer, atol=1e-5, rtol=1e-5)
            one_view = network.top.features(network.bottom(x))
            assert not torch.allclose(network.top.features(network.bottom(x.flip(-1))), one_view)
    finally:
        network.mirror = False


def test_training_in_bf16_computes_the_strided_blocks_as_they_are(network, monkeypatch):
    """In bf16 on a CPU the top trains its strided blocks as stride-1 convolutions
    subsampled (PyTorch's bf16 gradient of a strided depthwise convolution is slow): the
    same values, and the same features as the network answers with."""
    x = network.bottom.maps_and_pooled(torch.rand(3, 1, SIZE, SIZE))[0]
    strided = [block for block in network.top.blocks if _strided(block)]
    assert len(strided) == 2  # Lite0's last four stages halve the maps twice
    with torch.no_grad():
        for block in network.top.blocks:
            if _strided(block):
                torch.testing.assert_close(_block_subsampled(block, x), block(x))
            x = block(x)
    rows = network.bottom(torch.rand(3, 1, SIZE, SIZE))
    calls = []
    monkeypatch.setattr(
        top_tuned, "_block_subsampled", lambda b, x: calls.append(b) or _block_subsampled(b, x)
    )
    try:
        network.top.train()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            trained = network.top.features(rows).float()
    finally:
        network.top.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        answered = network.top.features(rows).float()
    assert calls == strided  # in training only
    # the same features but for bf16 rounding, judged over all of them: element by element,
    # a clamp at the edge of its range may flip (CPUs without bf16 round otherwise)
    assert float((trained - answered).norm() / answered.norm()) < 0.01
