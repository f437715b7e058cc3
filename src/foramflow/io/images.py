"""Read any image a microscope or a scanner writes into a float array in [0, 1].

JPEG, PNG, TIFF and BMP; 8- or 16-bit; grey, RGB, RGBA or palette. Intensities are
rescaled by bit depth (÷255 or ÷65535), never by the image's own range, so that the
same particle gives the same numbers whatever else is in the picture.

The size an image's header claims is checked before any pixel is decoded: a compressed
file of a few hundred kilobytes can claim gigabytes of pixels. Two caps apply: the pixels
(width × height, what the float copy costs) and the bytes the decoder itself holds, which for
a TIFF are the whole page (every sample of every pixel) and one of its tiles or strips,
decoded one at a time, all from the page's metadata.
"""

from __future__ import annotations

import errno
import math
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

#: Most bytes the decoder may hold per pixel of the cap: a 16-bit RGBA image at the cap.
DECODED_BYTES_PER_PIXEL = 8

#: Most samples (channels) per pixel of an image: grey, grey and alpha, RGB or RGBA.
MAX_SAMPLES = 4

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


def read_thumbnail(path: str | Path, size: int, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An 8-bit picture of ``path`` no more than about twice ``size`` on a side, for display.

    The same caps as :func:`read_image`; a JPEG is decoded at a reduced scale and other
    images are reduced before any float copy is made, so that a thumbnail of a large image
    costs its decoded bytes once and no more.
    """
    path = Path(path)
    with _open_file(path) as handle:
        if path.suffix.lower() in _TIFF_SUFFIXES:
            array = _read_tiff(handle, path, max_pixels)
        else:
            array = _read_with_pillow(handle, path, max_pixels, reduce_to=2 * size)
    step = max(1, -(-max(array.shape[:2]) // (2 * size)))
    small = np.ascontiguousarray(array[::step, ::step])
    del array
    return np.round(_to_unit_float(small, path) * 255).astype(np.uint8)


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


def _read_with_pillow(
    handle: BinaryIO, path: Path, max_pixels: int, *, reduce_to: int | None = None
) -> np.ndarray:
    """Decode with Pillow; with ``reduce_to``, at about that many pixels on the longer side
    (a JPEG by its decoder's scaling, other images by Pillow's box reduction)."""
    try:
        with _open_with_pillow(handle) as image:
            _check_pillow_size(image, path, max_pixels)
            if reduce_to is not None and image.format == "JPEG":
                image.draft(image.mode, (reduce_to, reduce_to))
            image.load()  # decode now so that truncated files fail here, not later
            if reduce_to is not None:
                image = _reduced(image, reduce_to)
            return _pillow_to_array(image, path)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageTooLargeError(path, f"image too large to decode ({err})") from err
    except UnidentifiedImageError as err:
        raise ImageReadError(path, "not a recognised image format") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"corrupt or truncated image ({err})") from err


def _reduced(image: Image.Image, reduce_to: int) -> Image.Image:
    factor = max(image.size) // reduce_to
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # a mode Pillow does not reduce (palette, bilevel): strided later
        return image


def _check_pillow_size(image: Image.Image, path: Path, max_pixels: int) -> None:
    """Refuse an image over the pixel cap, or whose decoded bytes are over the byte cap."""
    width, height = image.size
    _check_pixels(path, max_pixels, width, height)
    bands = len(image.getbands())
    if bands > MAX_SAMPLES:
        raise ImageReadError(
            path, f"{bands} samples per pixel; foramflow reads grey, RGB or RGBA images"
        )
    pixel_bytes = 4 if bands > 1 else max(1, _MODE_BYTES.get(image.mode, 4))
    _check_decoded_bytes(path, max_pixels, width * height * pixel_bytes, "decoding")


# Bytes per pixel of Pillow's one-band modes (multi-band images take 4).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


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


def _tiff_first_page(
    handle: BinaryIO, path: Path, max_pixels: int, *, max_samples: int | None = None
) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(handle) as tiff:
        page = tiff.pages[0]
        _check_tiff_page(path, page, max_pixels, max_samples)
        return page.asarray(maxworkers=1)


def _check_tiff_page(path: Path, page, max_pixels: int, max_samples: int | None) -> None:
    """Refuse a page whose pixels, samples, or decoded bytes (the page and one tile or strip
    at a time) are over the caps, from its metadata alone."""
    _check_pixels(path, max_pixels, page.imagewidth, page.imagelength, page.imagedepth)
    samples = int(page.samplesperpixel)
    if max_samples is not None and samples > max_samples:
        raise ImageReadError(
            path, f"{samples} samples per pixel; foramflow reads grey, RGB or RGBA images"
        )
    if page.dtype is None:  # a pixel type tifffile does not decode: Pillow may
        # Caught by _read_tiff, which tries Pillow and then names the file.
        raise ValueError(f"TIFF pixel type not supported (sample format {page.sampleformat})")
    itemsize = np.dtype(page.dtype).itemsize
    page_bytes = math.prod(page.shape) * itemsize
    segment_bytes = math.prod(page.chunks) * itemsize
    _check_decoded_bytes(path, max_pixels, page_bytes + segment_bytes, "decoding the TIFF")


def _check_decoded_bytes(path: Path, max_pixels: int, n_bytes: int, doing: str) -> None:
    limit = max_pixels * DECODED_BYTES_PER_PIXEL
    if n_bytes > limit:
        raise ImageTooLargeError(
            path,
            f"{doing} takes {n_bytes / 2**20:.0f} MiB, over the limit of "
            f"{limit / 2**20:.0f} MiB for one image; not decoded",
        )


def _read_tiff(handle: BinaryIO, path: Path, max_pixels: int) -> np.ndarray:
    try:
        array = _tiff_first_page(handle, path, max_pixels, max_samples=MAX_SAMPLES)
    except ImageReadError:
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
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(bool): 1.0}
    if array.dtype in scale:
        unit = array.astype(np.float32)
        unit /= scale[array.dtype]  # in place: one float copy of the image, not two
        return unit
    raise ImageReadError(path, f"unsupported pixel type {array.dtype} (expected 8- or 16-bit)")
