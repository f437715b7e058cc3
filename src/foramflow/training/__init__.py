"""Training: a labelled image set to an evaluated model bundle.

The step is :func:`train` (:func:`foramflow.train.loop.train`). This package can be called
as the step itself, ``foramflow.train(config)``, so that ``from foramflow import train``
gives the step whether or not a module of the package was imported before.
"""

import sys
import types

from foramflow._lazy import lazy_names

__all__ = ["TrainConfig", "TrainResult", "train"]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "TrainConfig": "foramflow.train.config",
        "TrainResult": "foramflow.train.loop",
        "train": "foramflow.train.loop",
    },
)


class _TrainPackage(types.ModuleType):
    def __call__(self, config, *, progress=None, resume=False):
        """Run :func:`foramflow.train.loop.train`."""
        from foramflow.train.loop import train

        return train(config, progress=progress, resume=resume)


sys.modules[__name__].__class__ = _TrainPackage
