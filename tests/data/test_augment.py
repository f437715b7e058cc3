import torch

from foramflow.data.augment import AugmentConfig, augment_batch, edge_median


def test_rotation_fills_corners_with_the_image_background():
    # A light background (as in shadowgraph plankton) with a dark centre: after rotation the
    # uncovered corners must be light, not black.
    x = torch.full((8, 1, 32, 32), 0.9)
    x[:, :, 12:20, 12:20] = 0.1
    config = AugmentConfig(zooms=(1.0,), gammas=(1.0,), gains=(1.0,))
    out = augment_batch(x, generator=torch.Generator().manual_seed(0), config=config)
    corners = torch.stack([out[:, 0, 0, 0], out[:, 0, 0, -1], out[:, 0, -1, 0], out[:, 0, -1, -1]])
    assert torch.allclose(corners, torch.tensor(0.9), atol=1e-4)


def test_augmentation_is_seeded_batched_and_in_range():
    x = torch.rand(16, 3, 24, 24)
    a = augment_batch(x, generator=torch.Generator().manual_seed(1))
    b = augment_batch(x, generator=torch.Generator().manual_seed(1))
    c = augment_batch(x, generator=torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_gain_and_gamma_only():
    x = torch.full((4, 1, 8, 8), 0.25)
    config = AugmentConfig(rotation=False, zooms=(1.0,), gammas=(0.5,), gains=(1.2,))
    out = augment_batch(x, generator=torch.Generator().manual_seed(0), config=config)
    assert torch.allclose(out, torch.tensor(0.25**0.5 * 1.2), atol=1e-5)


def test_edge_median():
    x = torch.zeros(1, 1, 5, 5)
    x[..., 1:4, 1:4] = 1.0
    assert edge_median(x).item() == 0.0
