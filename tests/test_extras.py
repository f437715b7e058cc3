"""A missing optional module names the extra that brings it."""

from foramflow.extras import missing_extra


def test_a_missing_torch_names_the_train_extra():
    message = missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch.nn"))
    assert "pip install 'foramflow[train]'" in message


def test_a_missing_openvino_and_dask_name_their_extras():
    assert "foramflow[bf16]" in missing_extra(ModuleNotFoundError(name="openvino"))
    assert "foramflow[cluster]" in missing_extra(ModuleNotFoundError(name="distributed"))


def test_other_missing_modules_are_not_an_extra():
    assert missing_extra(ModuleNotFoundError(name="numpy")) is None
