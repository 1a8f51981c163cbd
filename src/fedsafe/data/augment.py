"""Training-only augmentation (design §1): random rotation in [-10, 10] degrees and horizontal flip.

The papers augment with "rotation +-10 deg, horizontal flip". The authors' code also augmented the test
set; fedsafe does not: only training batches go through :func:`augment_batch`.

The random draw (:func:`sample_augment_params`) is separate from the pure transform
(:func:`apply_augment`), as MONAI separates ``randomize()`` from ``__call__()``, so a test can apply a
known angle. Both work on whole batches (one broadcast grid + one ``grid_sample`` call), with no
per-image Python loop.

Example::

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(8, 1, 32, 32)
    >>> y = augment_batch(x, g)
    >>> y.shape == x.shape and bool((y >= 0).all() and (y <= 1).all())
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "AugmentParams",
    "apply_augment",
    "augment_batch",
    "normalise_stats",
    "rotate_batch",
    "rotation_grid",
    "sample_augment_params",
]


@dataclass(frozen=True)
class AugmentParams:
    """Per-image parameters of one augmentation draw: ``angles_deg`` (B,) float, ``flip`` (B,) bool."""

    angles_deg: torch.Tensor
    flip: torch.Tensor


def sample_augment_params(
    batch_size: int,
    generator: torch.Generator,
    *,
    max_rotation_deg: float = 10.0,
    hflip_p: float = 0.5,
) -> AugmentParams:
    """Draw per-image angles ~ U[-max_rotation_deg, max_rotation_deg] and flips ~ Bernoulli(hflip_p).

    Two uniform draws of ``batch_size`` values are taken from ``generator`` whatever the settings, so the
    stream advances the same way with augmentation switched off. Tensors live on ``generator.device``.
    """
    if max_rotation_deg < 0:
        raise ValueError(f"max_rotation_deg must be >= 0, got {max_rotation_deg}.")
    if not 0.0 <= hflip_p <= 1.0:
        raise ValueError(f"hflip_p must lie in [0, 1], got {hflip_p}.")
    u = torch.rand(batch_size, generator=generator, device=generator.device, dtype=torch.float64)
    v = torch.rand(batch_size, generator=generator, device=generator.device, dtype=torch.float64)
    return AugmentParams(angles_deg=(2.0 * u - 1.0) * max_rotation_deg, flip=v < hflip_p)


def rotation_grid(
    angles_deg: torch.Tensor,
    height: int,
    width: int,
    *,
    flip: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The ``grid_sample`` grid (B, H, W, 2) that rotates each image by its angle, then optionally flips it.

    Same grid as ``F.affine_grid(theta, size, align_corners=False)`` with
    theta = [[cos, -sin H/W, 0], [sin W/H, cos, 0]] (the aspect factors make it a true rotation in pixel
    space when H != W), but built by broadcasting: ``affine_grid`` runs a batched matmul that is several
    times slower on a CPU. A horizontal flip after the rotation reads the rotated image at -x, so it is
    folded in by negating the x column of theta (one resampling instead of a second copy).
    """
    angles = angles_deg.to(torch.float64).reshape(-1)
    device = angles.device
    rad = torch.deg2rad(angles)
    cos, sin = torch.cos(rad), torch.sin(rad)
    sign = torch.ones_like(cos) if flip is None else 1.0 - 2.0 * flip.to(device=device, dtype=torch.float64)
    # output pixel centres in normalised coordinates (align_corners=False)
    xs = ((2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1).view(1, 1, width)
    ys = ((2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1).view(1, height, 1)

    def coef(v: torch.Tensor) -> torch.Tensor:
        return v.to(dtype).view(-1, 1, 1)

    grid = torch.empty(len(angles), height, width, 2, dtype=dtype, device=device)
    # each term is (B, 1, W) or (B, H, 1): the sum is the only full-size pass, written in place
    torch.add(coef(cos * sign) * xs, coef(-sin * (height / width)) * ys, out=grid[..., 0])
    torch.add(coef(sin * sign * (width / height)) * xs, coef(cos) * ys, out=grid[..., 1])
    return grid


def rotate_batch(
    x: torch.Tensor,
    angles_deg: torch.Tensor | float,
    *,
    flip: torch.Tensor | None = None,
    padding_mode: str = "border",
) -> torch.Tensor:
    """Rotate each image of x (B, C, H, W) about its centre by its angle in degrees, bilinear; then flip.

    Positive angles turn the content counter-clockwise as displayed (row 0 at the top), as
    ``torch.rot90(x, 1, dims=(-2, -1))`` does at 90 degrees. ``flip`` (B,) bool mirrors the rotated images
    horizontally within the same resampling. ``padding_mode="border"`` (the default) fills the corners
    uncovered by the rotation with the nearest edge pixel instead of black: a black wedge would be a
    feature no real scan has, which a CNN can learn. Half precision inputs are resampled in float32 (a
    bf16 grid is off by up to half a pixel at 100 px) and cast back. Returns a new tensor.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got {x.dtype}.")
    b, _, h, w = x.shape
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    angles = torch.as_tensor(angles_deg, dtype=torch.float64).to(x.device).expand(b)
    grid = rotation_grid(angles, h, w, flip=flip, dtype=work)
    out = F.grid_sample(x.to(work), grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.to(x.dtype)


def apply_augment(x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Rotate then flip each image of x (B, C, H, W) by ``params``; a new tensor, clamped to [0, 1].

    Keeps x's dtype, device and memory format (channels_last in, channels_last out); x is not modified.
    If every angle is exactly 0 nothing is resampled and flips are exact copies (``torch.flip``).
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got {x.dtype}.")
    if params.angles_deg.shape != (x.shape[0],) or params.flip.shape != (x.shape[0],):
        raise ValueError(f"params are for {params.angles_deg.shape[0]} images, x has {x.shape[0]}.")
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    # decided on the parameters where they were drawn (the CPU generator): no device-to-host sync on a GPU
    rotate, any_flip = bool((params.angles_deg != 0).any()), bool(params.flip.any())
    angles = params.angles_deg.to(x.device, non_blocking=True)
    flip = params.flip.to(x.device, non_blocking=True)
    if rotate:
        # bilinear weights are convex, so only rounding can leave [0, 1]
        out = rotate_batch(x, angles, flip=flip).clamp_(0.0, 1.0)
    else:
        out = x.clone()
        if any_flip:
            out[flip] = out[flip].flip(-1)
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    max_rotation_deg: float = 10.0,
    hflip_p: float = 0.5,
) -> torch.Tensor:
    """Training augmentation of the papers: rotation ~ U[-10, 10] degrees, horizontal flip with p = 0.5.

    Args:
        x: (B, C, H, W) float images in [0, 1], any device, contiguous or channels_last.
        generator: the only source of randomness (a same-seeded generator replays the same batch).
        max_rotation_deg: half-width of the uniform angle range (0 turns rotation off).
        hflip_p: probability of a horizontal flip per image (0 turns flipping off).

    Returns:
        A new tensor like x (dtype, device, memory format), values in [0, 1]; x is untouched. Rotation
        is bilinear with border padding (see :func:`rotate_batch`).
    """
    params = sample_augment_params(x.shape[0], generator, max_rotation_deg=max_rotation_deg, hflip_p=hflip_p)
    return apply_augment(x, params)


def normalise_stats(images: np.ndarray, *, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of uint8 images, in [0, 1] pixel units.

    Pass the training images only: statistics from test images would leak into preprocessing. Sums are
    taken exactly in int64 over chunks of ``chunk`` images, so large sets (PatchCamelyon) need no float
    copy and the result does not depend on the chunking.

    Args:
        images: (N, H, W, C) uint8, N >= 1.

    Returns:
        (mean, std): two float64 arrays of shape (C,).

    >>> normalise_stats(np.full((2, 4, 4, 1), 255, np.uint8))
    (array([1.]), array([0.]))
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W, C) uint8, got {images.shape} {images.dtype}.")
    if images.shape[0] == 0 or images[0].size == 0:
        raise ValueError("images is empty: no statistics to compute.")
    c = images.shape[-1]
    s = np.zeros(c, dtype=np.int64)
    ss = np.zeros(c, dtype=np.int64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].reshape(-1, c).astype(np.int64)
        s += block.sum(axis=0)
        ss += (block * block).sum(axis=0)
    m = images.shape[0] * images.shape[1] * images.shape[2]
    mean = np.array([int(v) / (m * 255) for v in s])
    # exact integer variance numerator m*ss - s^2 (Python ints do not overflow)
    var = np.array([(m * int(q) - int(v) ** 2) / (m * m * 255 * 255) for v, q in zip(s, ss, strict=True)])
    return mean, np.sqrt(var)
