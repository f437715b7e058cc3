"""Small generated image sets with known classes, shared by tests of several areas."""

from __future__ import annotations

from pathlib import Path


def write_shape_set(root: Path, *, n_per_class: int = 40, size: int = 32, seed: int = 0) -> Path:
    """A tiny learnable folder-per-class set: bright discs, rings and bars on a dark, noisy
    background, at random positions, sizes and angles. Returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for name in ("bar", "disc", "ring"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            cy, cx = rng.uniform(0.4, 0.6, 2) * size
            r = rng.uniform(0.22, 0.32) * size
            d = np.hypot(yy - cy, xx - cx)
            if name == "disc":
                shape = d < r
            elif name == "ring":
                shape = (d < r) & (d > 0.6 * r)
            else:
                angle = rng.uniform(0, np.pi)
                along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
                across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
                shape = (np.abs(along) < r) & (np.abs(across) < 0.25 * r)
            image = 0.1 + 0.7 * shape + rng.normal(0, 0.05, (size, size))
            pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i:03d}.png")
    return root


def write_png_bomb(path: Path, side: int) -> Path:
    """A valid 1-bit PNG of ``side`` × ``side`` black pixels, a few kilobytes on disk,
    written row by row so that it is never held in memory. Returns ``path``."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte, then the packed bits
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path
