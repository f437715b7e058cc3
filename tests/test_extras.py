"""A missing optional module names the extra that brings it."""

import builtins
import sys

from typer.testing import CliRunner

from foramflow.cli import app
from foramflow.extras import missing_extra


def test_a_missing_torch_names_the_train_extra():
    message = missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch.nn"))
    assert "pip install 'foramflow[train]'" in message


def test_a_missing_openvino_and_dask_name_their_extras():
    assert "foramflow[bf16]" in missing_extra(ModuleNotFoundError(name="openvino"))
    assert "foramflow[cluster]" in missing_extra(ModuleNotFoundError(name="distributed"))


def test_other_missing_modules_are_not_an_extra():
    assert missing_extra(ModuleNotFoundError(name="numpy")) is None


def test_a_command_whose_extra_is_missing_says_what_to_install(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def without_torch(name, *args, **kwargs):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if m.startswith("foramflow.training")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", without_torch)
    (tmp_path / "data" / "a").mkdir(parents=True)
    result = CliRunner().invoke(
        app, ["train", str(tmp_path / "data"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "pip install 'foramflow[train]'" in result.output
    assert "Traceback" not in result.output
