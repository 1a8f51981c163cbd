"""Synthetic pictures the data tests share."""

from __future__ import annotations

import numpy as np


def smooth_image(seed: int, size: int = 160, lo: int = 40, hi: int = 220) -> np.ndarray:
    """A smooth random grey picture (a few Gaussian blobs) with grey levels in [lo, hi]: JPEG re-encoding changes it
    only a little."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size))
    for _ in range(6):
        cx, cy, r, a = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.3), rng.uniform(-1, 1)
        image += a * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    image = (image - image.min()) / (np.ptp(image) + 1e-9)
    return np.rint(lo + (hi - lo) * image).astype(np.uint8)
