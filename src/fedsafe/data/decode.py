"""Decode image files to square uint8 arrays, (S, S, C) with C = 1 (grey) or 3 (RGB).

Colour: C = 1 is PIL mode "L" (ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B); C = 3 is "RGB"
(a grey source is replicated). Size: PIL bilinear resampling straight to S x S; Pillow widens the
bilinear kernel by the scale factor when shrinking, so the downscale is antialiased (area-like).
Non-square sources are stretched to the square, as the papers' preprocessing does.

Unreadable files (corrupt, truncated, not an image) are skipped and named in the result, with the
error; ``strict=True`` raises a ValueError naming the file instead. Pillow's process-wide
``ImageFile.LOAD_TRUNCATED_IMAGES`` is never changed, so truncated JPEGs fail rather than half-decode.

Example::

    result = decode_files(paths, size=64, channels=1)   # result.images: (K, 64, 64, 1) uint8
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..progress import Progress, report

__all__ = [
    "DECODE_ERRORS", "RESAMPLE", "RESAMPLE_NAME", "DecodeResult", "check_size_channels", "to_square", "decode_image",
    "decode_files", "resize_images",
]

log = logging.getLogger(__name__)

RESAMPLE = Image.Resampling.BILINEAR
RESAMPLE_NAME = "PIL bilinear (antialiased when shrinking)"
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
)
_MODES = {1: "L", 3: "RGB"}


def check_size_channels(size: int, channels: int) -> None:
    """Raise ValueError unless size >= 1 and channels is 1 or 3."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    if channels not in _MODES:
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")


def to_square(image: Image.Image, *, size: int, channels: int) -> np.ndarray:
    """Convert a PIL image to (size, size, channels) uint8 (colour first, then resize)."""
    mode = _MODES[channels]
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    return array.reshape(size, size, channels)


def decode_image(path: Path, *, size: int, channels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one file. Returns ((size, size, channels) uint8, original (width, height)).

    Raises what Pillow raises on a bad file (one of ``DECODE_ERRORS``).
    """
    with Image.open(path) as image:
        image.load()
        return to_square(image, size=size, channels=channels), image.size


@dataclass
class DecodeResult:
    """Output of :func:`decode_files`.

    images: (K, S, S, C) uint8 for the K files that decoded; ok: (K,) int64 indices into the input paths;
    sizes: (K,) original "WxH" of each decoded file; unreadable: [{"file", "error"}] for the others.
    """

    images: np.ndarray
    ok: np.ndarray
    sizes: list[str] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)


def decode_files(
    paths: Sequence[Path], *, size: int, channels: int, strict: bool = False, progress: Progress | None = None,
) -> DecodeResult:
    """Decode ``paths`` in order; progress step "decoding images".

    Raises ValueError naming the file on the first unreadable one if ``strict``.
    """
    check_size_channels(size, channels)
    images = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    ok: list[int] = []
    sizes: list[str] = []
    unreadable: list[dict[str, str]] = []
    total = len(paths)
    report(progress, "decoding images", 0, total)
    for i, path in enumerate(paths):
        try:
            array, (w, h) = decode_image(Path(path), size=size, channels=channels)
        except DECODE_ERRORS as exc:
            message = f"{type(exc).__name__}: {exc}"
            if strict:
                raise ValueError(f"cannot decode image {path}: {message}") from exc
            log.warning("skipping unreadable image %s: %s", path, message)
            unreadable.append({"file": str(path), "error": message})
        else:
            images[len(ok)] = array
            ok.append(i)
            sizes.append(f"{w}x{h}")
        if (i + 1) % 32 == 0 or i + 1 == total:
            report(progress, "decoding images", i + 1, total)
    return DecodeResult(images=images[: len(ok)], ok=np.array(ok, dtype=np.int64), sizes=sizes,
                        unreadable=unreadable)


def resize_images(
    images: np.ndarray, *, size: int, channels: int, progress: Progress | None = None,
    step: str = "resizing images",
) -> np.ndarray:
    """Resize and colour-convert an array of images with the same rules as files.

    images: (N, H, W) or (N, H, W, C), C in {1, 3}, uint8. Returns (N, size, size, channels) uint8.
    """
    check_size_channels(size, channels)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"images must be (N,H,W), (N,H,W,1) or (N,H,W,3), got {images.shape}")
    n = images.shape[0]
    src_channels = 1 if images.ndim == 3 else 3
    if images.shape[1:3] == (size, size) and src_channels == channels:
        return images.reshape(n, size, size, channels).copy()
    out = np.empty((n, size, size, channels), dtype=np.uint8)
    for i in range(n):
        out[i] = to_square(Image.fromarray(images[i]), size=size, channels=channels)
        if (i + 1) % 1024 == 0 or i + 1 == n:
            report(progress, step, i + 1, n)
    return out
