import torch

from foramflow.training import device
from foramflow.training.device import CompiledOrEager, resolve_device, use_bf16


def test_compiled_network_falls_back_to_eager_when_compilation_fails(monkeypatch):
    def broken_compile(network):
        def run(x):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(device.torch, "compile", broken_compile)
    network = torch.nn.Linear(3, 2)
    messages = []
    step = CompiledOrEager(network, messages.append)
    x = torch.rand(4, 3)
    assert torch.equal(step(x), network(x))
    assert torch.equal(step(x), network(x))
    assert len(messages) == 1 and "uncompiled" in messages[0]


def test_device_and_precision_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert use_bf16("fp32", torch.device("cpu")) is False
    assert use_bf16("bf16", torch.device("cpu")) is True
