"""Read any image a microscope or a scanner writes into a float array in [0, 1].

JPEG, PNG, TIFF and BMP; 8- or 16-bit; grey, RGB, RGBA or palette. Intensities are
rescaled by bit depth (÷255 or ÷65535), never by the image's own range, so that the
same particle gives the same numbers whatever else is in the picture.

The size an image's header claims is checked before any pixel is decoded: a compressed
file of a few hundred kilobytes can claim gigabytes of pixels.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from foramflow.errors import ForamflowError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})

_TIFF_SUFFIXES = frozenset({".tif", ".tiff"})

#: Most pixels decoded from one image by default: far more than a crop of one particle
#: has, and about 600 MB once decoded to float RGB, per decoding process.
MAX_PIXELS = 50_000_000

#: Most pixels decoded from a tray photograph or a focal plane (``stack``, ``segment``):
#: a 10 000 × 10 000 mosaic. Segmenting takes about 15 bytes of memory per pixel, so the
#: limit keeps a tray under 1.5 GB; larger mosaics need a larger ``max_pixels``.
TRAY_MAX_PIXELS = 100_000_000

# Pillow's own pixel limit is one process-wide setting; it is lifted while a header is
# parsed (the cap of this module replaces it), one thread at a time.
_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageReadError(ForamflowError, ValueError):
    """An image could not be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{printable_path(path)}: {reason}")


class ImageTooLargeError(ImageReadError):
    """An image's header claims more pixels than the cap; nothing was decoded."""


def printable_path(path: str | Path) -> str:
    """``path`` as text that prints and writes to UTF-8 files: bytes of a file name that
    are not valid UTF-8 are shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_image_file(path: Path) -> bool:
    """True for a visible name with an image suffix foramflow reads (the name only: see
    :func:`image_file_problem` for what is behind it)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_utf8_path(path: str | Path) -> bool:
    """False for a path with bytes that are not UTF-8: it cannot be written to a table."""
    try:
        os.fsdecode(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def image_file_problem(path: Path) -> str | None:
    """Why an entry named like an image, other than a folder, cannot be read as one (a
    dangling link, a link loop, a FIFO, a name that is not UTF-8); None for a file."""
    if not is_utf8_path(path):
        return "file name is not valid UTF-8"
    try:
        info = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if path.is_symlink():
            return f"dangling symbolic link (to {printable_path(os.readlink(path))})"
        return f"cannot open file ({err.strerror or err})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    return None


def read_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as float32 in [0, 1]: (H, W) for grey, (H, W, 3) for colour.

    Alpha is dropped; palette images are expanded to their colours. Raises
    :class:`ImageReadError` for a missing, empty, unreadable, corrupt or unsupported file,
    and :class:`ImageTooLargeError` for one whose header claims more than ``max_pixels``.
    """
    path = Path(path)
    with _open_file(path) as handle:
        if path.suffix.lower() in _TIFF_SUFFIXES:
            array = _read_tiff(handle, path, max_pixels)
        else:
            array = _read_with_pillow(handle, path, max_pixels)
    return _to_unit_float(array, path)


def read_tiff_page(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The first page of a TIFF as stored, any pixel type (a float32 depth map, say)."""
    path = Path(path)
    with _open_file(path) as handle:
        try:
            return _tiff_first_page(handle, path, max_pixels)
        except ImageReadError:
            raise
        except Exception as err:
            raise ImageReadError(path, f"corrupt or unsupported TIFF ({err})") from err


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels.

    Raises :class:`ImageReadError` for anything that is not a readable image header.
    """
    path = Path(path)
    with _open_file(path) as handle:
        try:
            with _open_with_pillow(handle) as image:
                return image.size
        except UnidentifiedImageError as err:
            raise ImageReadError(path, "not a recognised image format") from err
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageReadError(path, f"corrupt image header ({err})") from err


def _open_file(path: Path) -> BinaryIO:
    """Open a regular, non-empty file; anything else is an ImageReadError saying what it is."""
    try:
        info = path.stat()
    except OSError as err:
        raise ImageReadError(path, f"cannot open file ({err.strerror or err})") from err
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(path, "not a file: a folder")
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(path, "not a regular file")
    if info.st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        return open(path, "rb")
    except OSError as err:
        raise ImageReadError(path, f"cannot open file ({err.strerror or err})") from err


def _check_pixels(path: Path, max_pixels: int, width: int, height: int, depth: int = 1) -> None:
    pixels = width * height * depth
    if pixels > max_pixels:
        size = f"{width} × {height}" + (f" × {depth}" if depth > 1 else "")
        raise ImageTooLargeError(
            path,
            f"image of {size} pixels ({_megapixels(pixels)}) is over the limit of "
            f"{_megapixels(max_pixels)} for one image; not decoded",
        )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} Mpx"


def _open_with_pillow(handle: BinaryIO) -> Image.Image:
    """Parse the header only; the caller checks the size before decoding."""
    with _PILLOW_LIMIT_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(handle)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _read_with_pillow(handle: BinaryIO, path: Path, max_pixels: int) -> np.ndarray:
    try:
        with _open_with_pillow(handle) as image:
            _check_pixels(path, max_pixels, *image.size)
            image.load()  # decode now so that truncated files fail here, not later
            return _pillow_to_array(image, path)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageTooLargeError(path, f"image too large to decode ({err})") from err
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


def _tiff_first_page(handle: BinaryIO, path: Path, max_pixels: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(handle) as tiff:
        page = tiff.pages[0]
        _check_pixels(path, max_pixels, page.imagewidth, page.imagelength, page.imagedepth)
        return page.asarray()


def _read_tiff(handle: BinaryIO, path: Path, max_pixels: int) -> np.ndarray:
    try:
        array = _tiff_first_page(handle, path, max_pixels)
    except ImageTooLargeError:
        raise
    except Exception as tiff_error:
        handle.seek(0)
        try:
            return _read_with_pillow(handle, path, max_pixels)
        except ImageTooLargeError:
            raise
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
