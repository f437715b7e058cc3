import numpy as np
import pytest

from foramflow.training.schedule import (
    ALRS,
    Decision,
    default_window_epochs,
    probability_decreasing,
)

rng = np.random.default_rng(0)


def _run(schedule, losses):
    return [schedule.step(loss) for loss in losses]


def test_steadily_falling_loss_never_drops():
    losses = np.linspace(2.0, 0.5, 600) + rng.normal(0, 0.05, 600)
    decisions = _run(ALRS(window=100), losses)
    assert Decision.DROP not in decisions and Decision.STOP not in decisions


@pytest.mark.parametrize("trend", [0.0, 0.5])
def test_flat_or_rising_loss_drops(trend):
    losses = 1.0 + np.linspace(0, trend, 300) + rng.normal(0, 0.05, 300)
    schedule = ALRS(window=100)
    decisions = _run(schedule, losses)
    assert Decision.DROP in decisions
    if trend > 0:  # rising: the very first test (after one full window) already drops
        assert decisions[99] is Decision.DROP


def test_waits_a_full_window_before_testing_and_again_after_a_drop():
    schedule = ALRS(window=50, max_drops=10)
    decisions = _run(schedule, 1.0 + np.linspace(0, 1, 400))
    drops = [i for i, d in enumerate(decisions) if d is Decision.DROP]
    assert drops[0] == 49
    assert np.all(np.diff(drops) >= 50)


def test_stops_after_the_set_number_of_drops():
    schedule = ALRS(window=20, max_drops=3)
    decisions = _run(schedule, np.linspace(1, 2, 200))
    assert decisions.count(Decision.DROP) == 2
    assert decisions.index(Decision.STOP) == 59


def test_probability_of_decrease():
    assert probability_decreasing(np.linspace(1, 0, 50)) == 1.0
    assert probability_decreasing(np.linspace(0, 1, 50)) == 0.0
    noisy_flat = 1.0 + rng.normal(0, 0.1, 10000)
    assert 0.01 < probability_decreasing(noisy_flat) < 0.99


def test_default_window_follows_the_paper():
    assert default_window_epochs(3000) == 40
    assert default_window_epochs(20000) == 10
    assert 10 < default_window_epochs(7500) < 40
