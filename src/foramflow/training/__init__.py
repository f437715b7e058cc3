"""Training: a labelled image set to an evaluated model bundle.

The step is :func:`train` (:func:`foramflow.training.step.train`), also ``foramflow.train``;
:class:`TrainConfig` holds its options for the command line and YAML files.
"""

from foramflow._lazy import lazy_names

__all__ = ["TrainConfig", "TrainResult", "train"]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "TrainConfig": "foramflow.training.config",
        "TrainResult": "foramflow.training.step",
        "train": "foramflow.training.step",
    },
)
