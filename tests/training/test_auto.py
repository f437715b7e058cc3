"""--model auto on set descriptions with known right answers."""

import numpy as np
from PIL import Image

from foramflow.training.auto import (
    PAPER_MODEL,
    TOP_MODEL,
    TRANSFER_MODEL,
    carries_colour,
    choose_recipe,
)


def test_a_cpu_trains_a_tail_on_a_small_set_and_fine_tunes_the_top_on_a_large_one():
    for counts in ([20] * 30, [8] * 50, [300, 200, 50], [18] * 6):
        assert choose_recipe(counts, gpu=False, colour=False).model == TRANSFER_MODEL
    for counts in ([25] * 70, [100] * 30, [500] * 20, [100] * 84, [900, 50, 50]):
        choice = choose_recipe(counts, gpu=False, colour=False)
        assert choice.model == TOP_MODEL and choice.min_per_class == 10


def test_a_gpu_with_large_classes_trains_the_papers_network():
    choice = choose_recipe([400] * 30, gpu=True, colour=False)
    assert choice.model == PAPER_MODEL and choice.min_per_class == 40


def test_a_gpu_with_small_classes_does_not_train_the_papers_network():
    assert choose_recipe([30] * 30, gpu=True, colour=False).model == TRANSFER_MODEL
    assert choose_recipe([60] * 30, gpu=True, colour=False).model == TOP_MODEL
    assert choose_recipe([100] * 84, gpu=True, colour=False).model == TOP_MODEL


def test_seventy_classes_of_25_images_are_all_kept():
    choice = choose_recipe([25] * 70, gpu=False, colour=False)
    assert choice.min_per_class <= 25
    assert "drop" not in " ".join(choice.reasons)


def test_a_set_of_classes_of_8_images_lowers_the_minimum_and_says_so():
    choice = choose_recipe([8] * 20 + [50] * 4, gpu=False, colour=False)
    assert choice.min_per_class == 8
    assert any("would drop 20 of 24 classes" in reason for reason in choice.reasons)


def test_a_minimum_given_by_the_user_is_kept():
    assert choose_recipe([8] * 20, gpu=False, colour=False, min_per_class=30).min_per_class == 30


def test_colour_is_kept_only_when_channels_differ(tmp_path):
    grey = np.full((20, 20), 120, np.uint8)
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "grey_as_rgb.png")
    stained = np.dstack([grey, grey // 2, grey // 3])
    Image.fromarray(stained).save(tmp_path / "stained.png")
    assert not carries_colour([tmp_path / "grey_as_rgb.png"])
    assert carries_colour([tmp_path / "grey_as_rgb.png", tmp_path / "stained.png"])
    assert choose_recipe([50] * 3, gpu=False, colour=True).channels == 3
