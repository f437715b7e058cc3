"""The model's registered defaults are the run's defaults."""

from foramflow.training.config import TrainConfig


def test_input_size_defaults_to_the_models_registered_size():
    assert TrainConfig(data="d", out="o", model="base_cyclic").input_size == 128
    assert TrainConfig(data="d", out="o", model="resnet50_tl").input_size == 224
    # the top reads more detail than its backbone's 128 px: measured more accurate
    assert TrainConfig(data="d", out="o", model="efficientnet_lite0_top").input_size == 160


def test_a_given_input_size_wins():
    assert TrainConfig(data="d", out="o", model="resnet50_tl", input_size=96).input_size == 96
