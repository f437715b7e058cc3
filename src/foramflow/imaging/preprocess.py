"""The one preprocessing function shared by training and classification (method §3).

Rescale by bit depth (done by :func:`foramflow.io.images.read_image`), convert to grey or
colour, pad to square with the median of the edge pixels (edges are background), and
resize bilinearly to the network input. An image longer than :data:`MAX_SQUARE_SIDE` is
reduced first, so that its square stays small whatever its shape. The output is
network-ready: float32 (C, S, S).

This module imports only numpy and Pillow so that classification never needs the
training framework. Its name and parameters are recorded in every model bundle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from foramflow.errors import InvalidInput
from foramflow.io.images import MAX_PIXELS, read_image

PREPROCESS_NAME = "foramflow.pad_square_edge_median_bilinear"

# ITU-R BT.601 luma, as used by Pillow's convert("L") and most scientific imaging tools.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class PreprocessSpec:
    """Parameters of :func:`preprocess`; stored verbatim in the model bundle."""

    size: int
    channels: int = 1

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise InvalidInput(f"channels must be 1 (grey) or 3 (colour), not {self.channels}")
        if self.size < 8:
            raise InvalidInput(f"input size must be at least 8 pixels, not {self.size}")

    def to_dict(self) -> dict:
        return {"name": PREPROCESS_NAME, "params": asdict(self)}

    @classmethod
    def from_dict(cls, spec: dict) -> PreprocessSpec:
        if spec.get("name") != PREPROCESS_NAME:
            raise InvalidInput(f"unknown preprocessing {spec.get('name')!r}")
        return cls(**spec["params"])


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Return (H, W, channels): luma for grey, the grey plane repeated for colour."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return (image @ _LUMA)[..., None].astype(np.float32)
    return np.repeat(image, channels, axis=-1)


def edge_median(image: np.ndarray) -> np.ndarray:
    """Median of the border pixels per channel of an (H, W, C) image."""
    border = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]], axis=0)
    return np.median(border, axis=0).astype(np.float32)


#: Longest side padded to square as it is: a longer image (a strip of 1 × 10 000 pixels, a
#: whole tray) is first reduced by a whole factor (box means), so that its square takes at
#: most 4096² pixels per channel (64 MiB) rather than up to the square of the pixel cap.
MAX_SQUARE_SIDE = 4096


def reduce_longest_side(image: np.ndarray, limit: int = MAX_SQUARE_SIDE) -> np.ndarray:
    """(H, W, C) reduced by the smallest whole factor that brings its longer side to at most
    ``limit``; unchanged when it is within it."""
    factor = -(-max(image.shape[:2]) // limit)
    if factor < 2:
        return image
    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F").reduce(factor))
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=-1)


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad (H, W, C) symmetrically to square with the edge median of each channel."""
    height, width = image.shape[:2]
    if height == width:
        return image
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    out = np.empty((side, side, image.shape[2]), dtype=np.float32)
    out[...] = edge_median(image)
    out[top : top + height, left : left + width] = image
    return out


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a square (S, S, C) float image to (size, size, C), bilinear per channel."""
    if image.shape[0] == size and image.shape[1] == size:
        return image.astype(np.float32, copy=False)
    planes = [
        np.asarray(Image.fromarray(image[..., c], mode="F").resize((size, size), Image.BILINEAR))
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=-1)


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Turn a [0, 1] image from :func:`read_image` into a float32 (C, S, S) network input."""
    image = to_channels(image.astype(np.float32, copy=False), spec.channels)
    square = pad_to_square(reduce_longest_side(image))
    resized = resize_bilinear(square, spec.size)
    return np.ascontiguousarray(np.clip(resized, 0.0, 1.0).transpose(2, 0, 1))


def load_and_preprocess(
    path: str | Path, spec: PreprocessSpec, *, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Read ``path`` (at most ``max_pixels``) and preprocess it; raises ImageReadError
    naming the file."""
    return preprocess(read_image(path, max_pixels=max_pixels), spec)
