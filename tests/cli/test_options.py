"""The shared option checks where the sweep cannot reach: a machine with a GPU, and the
escapes of tab-separated output."""

from __future__ import annotations

import pytest
import torch
import typer

from foramflow.cli.console import tsv_row
from foramflow.cli.options import Device, Finite


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0"])
def test_a_device_this_machine_has_is_accepted(one_gpu, name):
    assert Device().check(name) == name


def test_a_gpu_index_out_of_range_names_those_there_are(one_gpu):
    with pytest.raises(typer.BadParameter, match=r"has 1 CUDA GPU\(s\), cuda:0 to cuda:0"):
        Device().check("cuda:7")


def test_without_a_gpu_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(typer.BadParameter, match="no CUDA GPU; use cpu or auto"):
        Device().check("cuda")
    with pytest.raises(typer.BadParameter, match="choose auto, cpu, cuda, cuda:N or mps"):
        Device().check("gpu0")


def test_finite_bounds_exclude_what_they_say():
    check = Finite(gt=0, le=1).check
    assert check(1.0) == 1.0 and check(None) is None
    for wrong in (0.0, 1.5, float("nan"), float("inf")):
        with pytest.raises(typer.BadParameter):
            check(wrong)


def test_tsv_fields_keep_to_one_line_and_their_columns():
    row = tsv_row("a\nb\tc\x1b[2J\r", "x\udcff", "é\u2028", 3)
    assert row == "a\\nb\\tc\\x1b[2J\\r\tx\\udcff\té\\u2028\t3"
    assert len(row.splitlines()) == 1 and len(row.split("\t")) == 4
