"""The modern recipe's parts: schedule, label smoothing, mixup/cutmix, flips, EMA, patience."""

import math

import pytest
import torch
from torch import nn

from foramflow.data.augment import AugmentConfig, augment_batch, mix_batch
from foramflow.training.config import TrainConfig
from foramflow.training.fit import Batches, FitSettings, fit
from foramflow.training.schedule import WarmupCosine


def test_warmup_then_cosine_reaches_zero_at_the_last_step():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupCosine(optimizer, total=10, warmup=2)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(10):
        schedule.step(0.0)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert rates[2 + 4] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_mixup_blends_pairs_with_the_drawn_weight():
    x = torch.stack([torch.full((1, 4, 4), float(i)) for i in range(8)])
    y = torch.arange(8)
    mixed, labels, partner, lam = mix_batch(x, y, generator=torch.Generator(), mixup=0.4)
    assert 0 < lam < 1 and torch.equal(labels, y)
    expected = lam * y.float() + (1 - lam) * partner.float()
    assert torch.allclose(mixed[:, 0, 0, 0], expected)


def test_cutmix_weight_is_the_share_of_pixels_kept():
    x = torch.stack([torch.full((1, 10, 10), float(i)) for i in range(8)])
    y = torch.arange(8)
    mixed, _, partner, lam = mix_batch(x, y, generator=torch.Generator(), cutmix=1.0)
    kept = (mixed == x).float().mean(dim=(1, 2, 3))
    moved = partner != y
    assert torch.allclose(kept[moved], torch.full_like(kept[moved], lam))


def test_mixing_is_off_by_default():
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
    mixed, labels, partner, lam = mix_batch(x, y, generator=torch.Generator())
    assert lam == 1.0 and mixed is x and torch.equal(partner, labels)


def test_flips_mirror_and_are_off_by_default():
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 6:] = 1.0  # a bar to the right of the centre
    plain = AugmentConfig(rotation=False, zooms=(1.0,), gammas=(1.0,), gains=(1.0,))
    flipping = AugmentConfig(**{**plain.__dict__, "flips": True})
    unflipped = augment_batch(x, generator=torch.Generator().manual_seed(0), config=plain)
    flipped = augment_batch(x, generator=torch.Generator().manual_seed(0), config=flipping)
    assert torch.allclose(unflipped, x, atol=1e-5)
    left = flipped[:, 0, 4, :3].sum(dim=1) > 2.5
    assert 0 < int(left.sum()) < 64  # some images mirrored, some not
    assert torch.allclose(flipped[left], x[left].flip(-1), atol=1e-5)


def test_ema_weights_are_the_ones_validated_and_kept(tmp_path):
    x, y = torch.randn(32, 3), torch.arange(32) % 2
    module = nn.Linear(3, 2)
    seen, accuracies = [], iter([0.5, 0.6])

    def validate(kept):
        seen.append(kept)
        return 1.0, next(accuracies)  # the last epoch is the best

    batches = Batches(module=module, train_x=x, train_y=y, validate=validate)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    settings = FitSettings(batch_size=8, seed=0, epochs=2, ema_decay=0.5)
    fit(batches, optimizer, settings, out=tmp_path)
    assert seen[0] is not module
    best = torch.load(tmp_path / "checkpoint_best.pt")
    assert not torch.allclose(best["weight"], module.weight)  # the average, not the last
    assert torch.equal(best["weight"], seen[0].weight.detach())  # loads into the network


def test_patience_stops_after_epochs_without_a_better_accuracy(tmp_path):
    x, y = torch.randn(16, 3), torch.arange(16) % 2
    accuracies = iter([0.5, 0.6, 0.6, 0.55, 0.7, 0.8])
    batches = Batches(
        module=nn.Linear(3, 2), train_x=x, train_y=y, validate=lambda m: (1.0, next(accuracies))
    )
    optimizer = torch.optim.SGD(batches.module.parameters(), lr=0.1)
    state = fit(batches, optimizer, FitSettings(batch_size=8, seed=0, epochs=6, patience=2),
                out=tmp_path)  # fmt: skip
    assert state["epoch"] == 4 and state["best_epoch"] == 2


def test_the_model_chooses_the_recipe_unless_told():
    paper = TrainConfig(data="d", out="o", model="base_cyclic")
    assert (paper.optimizer, paper.schedule, paper.label_smoothing) == ("adam", "alrs", 0.0)
    told = TrainConfig(
        model="base_cyclic", data="d", out="o", optimizer="adamw", schedule="cosine", epochs=5
    )
    assert (told.optimizer, told.schedule) == ("adamw", "cosine")
    with pytest.raises(ValueError, match="cosine schedule needs a number of epochs"):
        TrainConfig(model="base_cyclic", data="d", out="o", schedule="cosine")


def test_transfer_learning_trains_its_tail_unweighted_over_a_cosine_and_alrs_stays_a_choice():
    tail = TrainConfig(data="d", out="o", model="efficientnet_lite0_tl")
    assert (tail.optimizer, tail.schedule, tail.epochs) == ("adamw", "cosine", 30)
    assert (tail.class_weights, tail.label_smoothing, tail.stages) == ("none", 0.1, True)
    paper = TrainConfig(data="d", out="o", model="base_cyclic")
    assert (paper.class_weights, paper.epochs) == ("clamped", None)
    alrs = TrainConfig(data="d", out="o", model="efficientnet_lite0_tl", schedule="alrs")
    assert alrs.epochs is None  # ALRS decides when to stop, not the cosine's 30 epochs


def test_the_moving_average_warms_up_so_a_short_run_is_not_held_at_its_start(tmp_path):
    x, y = torch.randn(16, 3), torch.arange(16) % 2
    module = nn.Linear(3, 2)
    start = module.weight.detach().clone()
    rising = iter([0.1, 0.2, 0.3, 0.4, 0.5])  # the last epoch is the one kept
    batches = Batches(module=module, train_x=x, train_y=y, validate=lambda m: (1.0, next(rising)))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    fit(batches, optimizer, FitSettings(batch_size=8, seed=0, epochs=5, ema_decay=0.999),
        out=tmp_path)  # fmt: skip
    kept = torch.load(tmp_path / "checkpoint_best.pt")["weight"]
    moved, averaged = (module.weight.detach() - start).norm(), (kept - start).norm()
    assert averaged > 0.3 * moved  # a fixed 0.999 would have moved it by about 1 %


def test_the_moving_average_of_a_network_with_batch_norm_counts_batches(tmp_path):
    x, y = torch.randn(16, 3), torch.arange(16) % 2
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    batches = Batches(module=module, train_x=x, train_y=y, validate=lambda m: (1.0, 0.5))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    fit(batches, optimizer, FitSettings(batch_size=8, seed=0, epochs=2, ema_decay=0.99),
        out=tmp_path)  # fmt: skip
    kept = torch.load(tmp_path / "checkpoint_best.pt")
    assert kept["1.num_batches_tracked"] == 2  # after the first epoch's two batches
