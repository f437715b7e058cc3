"""Tray and stack images: focus stacking, segmentation into crops, crop preprocessing.

The steps on folders are :func:`stack_folder`, :func:`stack_planes` and
:func:`segment_folder`; :func:`fuse_stack` and :func:`segment_image` do the work on one
image in memory.
"""

from foramflow._lazy import lazy_names

__all__ = [
    "AllTooSmall",
    "FusedStack",
    "ImagingInputError",
    "SegmentResult",
    "SegmentationError",
    "StackResult",
    "crop_particles",
    "fuse_planes",
    "fuse_stack",
    "segment_folder",
    "segment_image",
    "stack_folder",
    "stack_planes",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        **dict.fromkeys(
            [
                "AllTooSmall",
                "FusedStack",
                "ImagingInputError",
                "SegmentResult",
                "StackResult",
                "fuse_planes",
                "segment_folder",
                "stack_folder",
                "stack_planes",
            ],
            "foramflow.imaging.steps",
        ),
        **dict.fromkeys(
            ["SegmentationError", "crop_particles", "segment_image"], "foramflow.imaging.segment"
        ),
        "fuse_stack": "foramflow.imaging.stack",
    },
)
