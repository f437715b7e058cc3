"""The train step's contract: options as keywords over an optional config, one trainer per
kind of registered model."""

import pytest

from foramflow.errors import ForamflowError
from foramflow.models.registry import get_entry, model_names
from foramflow.training.config import TrainConfig
from foramflow.training.full import FullTrainer
from foramflow.training.step import configure
from foramflow.training.top import TopTrainer
from foramflow.training.trainers import TRAINERS
from foramflow.training.transfer import TransferTrainer


def test_keywords_give_the_config_the_command_line_would():
    made = configure("forams", "runs/a", model="base_cyclic", epochs=3, seed=2)
    assert made == TrainConfig(data="forams", out="runs/a", model="base_cyclic", epochs=3, seed=2)


def test_a_config_that_the_call_does_not_change_is_used_as_it_is():
    config = TrainConfig(data="forams", out="runs/a", model="base_cyclic", epochs=3)
    assert configure("forams", "runs/a", config=config, model=None) is config


def test_keywords_replace_the_fields_of_a_config_and_keep_the_others():
    config = TrainConfig(data="forams", out="runs/a", model="base_cyclic", epochs=3, seed=0)
    made = configure("other", "runs/b", config=config, seed=1, epochs=None)
    assert (made.data, made.out, made.seed, made.epochs) == ("other", "runs/b", 1, 3)
    assert made.model_dump(exclude={"data", "out", "seed"}) == config.model_dump(
        exclude={"data", "out", "seed"}
    )


@pytest.mark.parametrize("wrong", [{"epoch": 3}, {"data": "forams"}, {"out": "runs/c"}])
def test_an_option_that_is_not_a_field_is_a_type_error_naming_it(wrong):
    with pytest.raises(TypeError, match=next(iter(wrong))):
        configure("forams", "runs/a", **wrong)


def test_a_value_out_of_range_is_an_error_naming_the_option():
    with pytest.raises(ForamflowError, match="batch_size"):
        configure("forams", "runs/a", model="base_cyclic", batch_size=0)


def test_every_kind_of_registered_model_has_its_trainer():
    kinds = {get_entry(name).kind for name in model_names()}
    assert kinds == set(TRAINERS)
    assert {"full": FullTrainer, "transfer": TransferTrainer, "top": TopTrainer} == TRAINERS
