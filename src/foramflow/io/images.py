"""Read any image a microscope or a scanner writes into a float array in [0, 1].

JPEG, PNG, TIFF and BMP; 8- or 16-bit; grey, RGB, RGBA or palette. Intensities are
rescaled by bit depth (÷255 or ÷65535), never by the image's own range, so that the
same particle gives the same numbers whatever else is in the picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})

_TIFF_SUFFIXES = frozenset({".tif", ".tiff"})


class ImageReadError(ValueError):
    """An image could not be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def is_image_file(path: Path) -> bool:
    """True for a visible file with an image suffix foramflow reads."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as float32 in [0, 1]: (H, W) for grey, (H, W, 3) for colour.

    Alpha is dropped; palette images are expanded to their colours. Raises
    :class:`ImageReadError` for a missing, empty, corrupt or unsupported file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImageReadError(path, f"cannot open file ({err.strerror or err})") from err
    if size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    if path.suffix.lower() in _TIFF_SUFFIXES:
        array = _read_tiff(path)
    else:
        array = _read_with_pillow(path)
    return _to_unit_float(array, path)


def _read_with_pillow(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()  # decode now so that truncated files fail here, not later
            return _pillow_to_array(image, path)
    except UnidentifiedImageError as err:
        raise ImageReadError(path, "not a recognised image format") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"corrupt or truncated image ({err})") from err


def _pillow_to_array(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("1", "LA", "La"):
        image = image.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        if array.min() < 0 or array.max() > 65535:
            raise ImageReadError(path, f"integer image of mode {mode} is not 8- or 16-bit")
        array = array.astype(np.uint16)
    elif image.mode == "F":
        raise ImageReadError(path, "floating-point images have no bit depth to rescale by")
    return array


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        array = tifffile.imread(path, key=0)
    except Exception as tiff_error:
        try:
            return _read_with_pillow(path)
        except ImageReadError:
            raise ImageReadError(path, f"corrupt or unsupported TIFF ({tiff_error})") from None
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar (C, H, W) storage
    return array


def _to_unit_float(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    elif (array.ndim == 3 and array.shape[-1] == 2) or (array.ndim == 3 and array.shape[-1] == 1):
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ImageReadError(path, f"unsupported image shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(path, "image has no pixels")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == bool:
        return array.astype(np.float32)
    raise ImageReadError(path, f"unsupported pixel type {array.dtype} (expected 8- or 16-bit)")
