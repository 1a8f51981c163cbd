"""Decode image files to square uint8 arrays, (S, S, C) with C = 1 (grey) or 3 (RGB).

Colour: C = 1 is PIL mode "L" (ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B); C = 3 is "RGB"
(a grey source is replicated). Size: PIL bilinear resampling straight to S x S; Pillow widens the
bilinear kernel by the scale factor when shrinking, so the downscale is antialiased (area-like).
Non-square sources are stretched to the square, as the papers' preprocessing does.

Pixel depth (:func:`to_8bit`): every source is first mapped to 8 bits, so that 0 is black and 255 white
whatever the file's mode, and [0, 1] pixel units mean the same for every file:

* 8-bit modes ("L", "P", "RGB", "CMYK", "YCbCr", "LA", "RGBA", "1", ...) are converted by Pillow; an alpha
  channel is ignored (the colour stored under it is used), "1" gives 0 / 255;
* 16-bit modes ("I;16", "I;16B", "I;16L", "I;16N"; what 16-bit PNG and TIFF files open as) are scaled by
  the 16-bit range: v8 = round(v16 / 257), so 0 -> 0, 65535 -> 255 and 257 k -> k exactly;
* 32-bit integer mode "I" is read as 16-bit data (how Pillow also holds 16-bit grey): values must lie in
  [0, 65535] and are scaled by 1/257;
* 32-bit float mode "F": values in [0, 1] are scaled by 255, else values in [0, 255] are kept, else values
  in [0, 65535] are scaled by 1/257 (first range that holds every pixel);
* anything else (NaN or infinite values, negative values, integers above 65535) has no known range: the
  file is unreadable (``UnmappableImageError``, skipped and named like a corrupt file), never a blank image.

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
    "DECODE_ERRORS", "RESAMPLE", "RESAMPLE_NAME", "DecodeResult", "UnmappableImageError", "check_size_channels",
    "error_text",
    "to_8bit", "to_square", "decode_image", "decode_files", "resize_images",
]

log = logging.getLogger(__name__)

RESAMPLE = Image.Resampling.BILINEAR
RESAMPLE_NAME = "PIL bilinear (antialiased when shrinking)"


class UnmappableImageError(ValueError):
    """A file that decodes but whose pixel values have no known range (NaN, negative, above 16 bits)."""


DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
)
_MODES = {1: "L", 3: "RGB"}
_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_FLOAT_RANGES: tuple[tuple[float, float], ...] = ((1.0, 255.0), (255.0, 1.0), (65535.0, 1.0 / 257.0))
"""(upper end of the range, scale to 8 bits) tried in order for mode "F" (lower end 0)."""


def _grey8(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def to_8bit(image: Image.Image) -> Image.Image:
    """Map a decoded image of any mode to an 8-bit mode (rules in the module docstring).

    High-depth grey modes ("I;16*", "I", "F") come back as mode "L"; other modes are returned unchanged
    (Pillow converts them to "L" / "RGB" exactly). Raises UnmappableImageError when no rule applies.
    """
    mode = image.mode
    if mode in _SIXTEEN_BIT or mode.startswith("I"):
        values = np.asarray(image).astype(np.int64)
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise UnmappableImageError(f"mode {mode} pixel values span [{lo}, {hi}], outside the 16-bit range "
                                       "[0, 65535]: no known range to map to [0, 1]")
        return _grey8(values / 257.0)
    if mode == "F":
        values = np.asarray(image).astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise UnmappableImageError("mode F holds NaN or infinite values: no known range to map to [0, 1]")
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        for top, scale in _FLOAT_RANGES:
            if lo >= 0.0 and hi <= top:
                return _grey8(values * scale)
        raise UnmappableImageError(f"mode F pixel values span [{lo:g}, {hi:g}], inside none of [0, 1], [0, 255], "
                                   "[0, 65535]: no known range to map to [0, 1]")
    return image


def check_size_channels(size: int, channels: int) -> None:
    """Raise ValueError unless size >= 1 and channels is 1 or 3."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    if channels not in _MODES:
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")


def to_square(image: Image.Image, *, size: int, channels: int) -> np.ndarray:
    """Convert a PIL image of any mode to (size, size, channels) uint8 (depth, then colour, then resize).

    Raises UnmappableImageError (a ValueError) when the pixel values cannot be mapped (see :func:`to_8bit`).
    """
    mode = _MODES[channels]
    image = to_8bit(image)
    if image.mode != mode:
        try:
            image = image.convert(mode)
        except ValueError:  # modes Pillow converts only to RGB ("LAB", "La")
            image = image.convert("RGB").convert(mode)
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


def error_text(exc: BaseException, path: Path | str) -> str:
    """``exc``'s message without ``path`` in it (Pillow writes "cannot identify image file '<path>'"): files of one
    content share a message (the cache stores it once), and each is named by its own path beside it."""
    text = str(exc)
    for form in (repr(str(path)), f'"{path}"', str(path)):
        text = text.replace(f" {form}", "").replace(form, "the file")
    return text


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
            message = f"{type(exc).__name__}: {error_text(exc, path)}"
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
