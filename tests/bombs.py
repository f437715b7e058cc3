"""Decompression bombs made cheaply: files of about a megabyte that honestly hold gigabytes.

Deflate compresses a run of zeros to about a thousandth; after a full flush the compressor
starts afresh, so the compressed block of one megabyte of zeros can be repeated to stand for
any number of megabytes without compressing them. The files below are valid (their sizes,
CRCs and checksums are right): a reader that trusts them really takes the memory they claim.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np

CHUNK = 2**20


@functools.cache
def _zero_block(chunk: int = CHUNK) -> bytes:
    """Raw deflate of ``chunk`` zeros, ending in a full flush (byte-aligned, state reset)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)


def raw_deflate(head: bytes, n_zeros: int) -> bytes:
    """Raw deflate of ``head`` followed by ``n_zeros`` zero bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)]
    repeats, rest = divmod(n_zeros, CHUNK)
    out.append(_zero_block() * repeats)
    out.append(compressor.compress(bytes(rest)) + compressor.flush())
    return b"".join(out)


@functools.cache
def _crc_of_zeros(n_zeros: int, start: int) -> int:
    crc, block = start, bytes(CHUNK)
    repeats, rest = divmod(n_zeros, CHUNK)
    for _ in range(repeats):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(bytes(rest), crc)


def zlib_of_zeros(n_zeros: int) -> bytes:
    """A zlib stream (header, deflate, Adler-32) of ``n_zeros`` zero bytes."""
    adler = ((n_zeros % 65521) << 16) | 1
    return b"\x78\xda" + raw_deflate(b"", n_zeros) + struct.pack(">I", adler)


def zip_bytes(members: list[tuple[str, bytes, int]]) -> bytes:
    """A zip of (name, head, n_zeros) members: each holds ``head`` then ``n_zeros`` zeros,
    deflated, with its true sizes and CRC."""
    local, central = io.BytesIO(), io.BytesIO()
    for name, head, n_zeros in members:
        data = raw_deflate(head, n_zeros)
        crc = _crc_of_zeros(n_zeros, zlib.crc32(head))
        size = len(head) + n_zeros
        encoded = name.encode()
        offset = local.tell()
        fields = (20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded))
        local.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + encoded + data)
        central.write(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, 0, offset)
            + encoded
        )
    directory = central.getvalue()
    n = len(members)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(directory), local.tell(), 0)
    return local.getvalue() + directory + end


def npy_header(shape: tuple[int, ...], dtype) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    np.lib.format.write_array_header_1_0(buffer, {**header, "shape": shape})
    return buffer.getvalue()


def npz_bomb(arrays: dict[str, tuple[tuple[int, ...], str]]) -> bytes:
    """An .npz whose arrays (name → (shape, dtype)) are all zeros, at their full size."""
    members = []
    for name, (shape, dtype) in arrays.items():
        n_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        members.append((f"{name}.npy", npy_header(shape, dtype), n_bytes))
    return zip_bytes(members)


def tiff_bytes(shape: tuple[int, ...], *, tile: tuple[int, int] | None = None, **options) -> bytes:
    """A zlib TIFF of zeros of ``shape`` (uint8) written as one tile or one strip, whose
    compressed segment is made without compressing it."""
    import tifffile

    if tile is None:
        n_bytes, layout = int(np.prod(shape)), {"rowsperstrip": shape[0]}
    else:
        n_bytes = tile[0] * tile[1] * int(np.prod(shape[2:]))
        layout = {"tile": tile}
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        writer.write(
            iter([zlib_of_zeros(n_bytes)]),
            shape=shape,
            dtype=np.uint8,
            compression="zlib",
            **layout,
            **options,
        )
    return buffer.getvalue()


def many_samples_tiff(side: int = 4000, samples: int = 64) -> bytes:
    """side² pixels of ``samples`` samples each: few pixels, a gigabyte of samples."""
    return tiff_bytes((side, side, samples), photometric="minisblack", planarconfig="contig")


def huge_tile_tiff(side: int = 64, tile: int = 32768) -> bytes:
    """A side² image stored in one tile² tile: a small image, a gigabyte tile."""
    return tiff_bytes((side, side), tile=(tile, tile), photometric="minisblack")


def blank_png(width: int, height: int, *, colour: bool = True) -> bytes:
    """An ordinary 8-bit black PNG (RGB or grey) of width × height pixels: about a
    thousandth of its decoded size on disk, made without compressing it."""
    samples = 3 if colour else 1

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    # Every scanline is filter byte 0 then zeros: the image data is all zeros.
    idat = zlib_of_zeros(height * (1 + width * samples))
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if colour else 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
