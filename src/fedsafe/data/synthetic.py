"""The embedded default task ``synthetic``: procedurally generated MRI-like axial brain slices.

Not real data: it exists so every command runs offline and fast, and every report says so
(``DataReport.synthetic = True``, source "synthetic ...").

Each image (coordinates in [-1, 1]^2, then rendered at S x S):

* head: a rotated ellipse, small random centre shift, axes and tilt; a bright skull ring and a dark
  CSF gap under it;
* brain: grey-matter level plus a smoothly varying white-matter pattern (thresholded smooth noise)
  and fine texture noise; a multiplicative bias field (coil inhomogeneity) and a random gain;
* ventricles: two dark ellipses near the centre, their size and spread varying;
* confounders, in both classes: 0 to 3 small bright spots (vessels, flow artefacts) and one faint,
  wide hyper-intensity, so neither "brightest pixel" nor "mean intensity" gives the label;
* class 1 ("tumor") only: a compact bright blob with an irregular edge and a darker oedema rim,
  anywhere in the brain, radius 0.08 to 0.19, contrast 0.22 to 0.5 (the faint end meets the
  confounders, so the task is not trivial; a small CNN still learns it to well above 90%);
* Rician-like noise (magnitude of a noisy signal).

Deterministic: images are made in chunks of 128, chunk k drawing from
``numpy_rng(seed, "data/synthetic", k)``; so the first n images are the same whatever the total, and
no global RNG is touched. Labels are balanced within every chunk. Vectorised numpy: 1000 images of
64 x 64 take well under a second.

Example::

    table, report = make_synthetic(1200, size=64, channels=1, seed=0)   # table.images: (1200, 64, 64, 1)
"""

from __future__ import annotations

import logging

import numpy as np

from ..progress import Progress, report
from ..seeding import numpy_rng
from .decode import check_size_channels
from .types import DataReport, ImageTable

__all__ = ["SYNTHETIC_CLASSES", "SYNTHETIC_SOURCE", "CHUNK", "synthetic_chunk", "make_synthetic"]

log = logging.getLogger(__name__)

SYNTHETIC_CLASSES: tuple[str, ...] = ("no_tumor", "tumor")
SYNTHETIC_SOURCE = "synthetic (embedded, procedurally generated MRI-like slices; not real data)"
CHUNK = 128
_PURPOSE = "data/synthetic"
_NO_NEAR_DUPLICATES = ("near-duplicates not searched: every slice is generated from its own random draws (no "
                       "re-encoded copies), so every image is its own group")


def _smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
    """(n, size, size) float32 noise, bilinear interpolation of a (cells+1)^2 N(0,1) grid."""
    grid = rng.standard_normal((n, cells + 1, cells + 1)).astype(np.float32)
    pos = np.linspace(0.0, cells, size, dtype=np.float32)
    lo = np.minimum(pos.astype(np.int64), cells - 1)
    frac = pos - lo
    interp = np.zeros((size, cells + 1), dtype=np.float32)
    interp[np.arange(size), lo] = 1.0 - frac
    interp[np.arange(size), lo + 1] += frac
    return interp @ grid @ interp.T


def _smoothstep(edge0: float | np.ndarray, edge1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1, a cubic in between (in-place arithmetic: this is the hot loop)."""
    t = x - edge0
    t *= 1.0 / (edge1 - edge0)
    np.clip(t, 0.0, 1.0, out=t)
    out = -2.0 * t
    out += 3.0
    out *= t
    out *= t
    return out


def _col(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32)[:, None, None]


def synthetic_chunk(seed: int, chunk: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``chunk`` of the task: (CHUNK, size, size) float32 images in [0, 1] and (CHUNK,) int64 labels."""
    rng = numpy_rng(seed, _PURPOSE, chunk)
    n = CHUNK
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    u = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(u, u, indexing="ij")
    yy, xx = yy[None], xx[None]
    px = 2.0 / float(size)  # one pixel in these coordinates, to keep thin structures visible at small sizes

    # head ellipse: r < 1 inside the skull's outer edge
    cx, cy = _col(rng.uniform(-0.06, 0.06, n)), _col(rng.uniform(-0.06, 0.06, n))
    ax, ay = _col(rng.uniform(0.70, 0.84, n)), _col(rng.uniform(0.82, 0.94, n))
    th = _col(rng.uniform(-0.25, 0.25, n))
    dx, dy = xx - cx, yy - cy
    xr, yr = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)
    r = np.sqrt((xr / ax) ** 2 + (yr / ay) ** 2)
    skull_w = max(0.08, 2.5 * px)
    head = 1.0 - _smoothstep(1.0 - px, 1.0 + px, r)
    brain_mask = 1.0 - _smoothstep(1.0 - skull_w - 0.04 - px, 1.0 - skull_w - 0.04 + px, r)
    skull = head * _smoothstep(1.0 - skull_w - px, 1.0 - skull_w + px, r)

    grey = _col(rng.uniform(0.34, 0.48, n))
    wm_field = _smooth_noise(rng, n, size, 5) + 1.6 * (0.75 - r)
    white = _smoothstep(-0.2, 0.4, wm_field) * _col(rng.uniform(0.07, 0.16, n))
    texture = 0.035 * _smooth_noise(rng, n, size, max(4, size // 4))
    brain = grey + white + texture

    # ventricles: two dark ellipses either side of the midline (in head coordinates)
    vdx, vdy = _col(rng.uniform(0.07, 0.13, n)), _col(rng.uniform(-0.12, 0.04, n))
    vrx, vry = _col(rng.uniform(0.04, 0.08, n)), _col(rng.uniform(0.12, 0.24, n))
    vent = np.zeros_like(r)
    for side in (-1.0, 1.0):
        rv = np.sqrt(((xr / ax - side * vdx) / vrx) ** 2 + ((yr / ay - vdy) / vry) ** 2)
        vent = np.maximum(vent, 1.0 - _smoothstep(0.8, 1.1, rv))
    brain = brain * (1.0 - 0.75 * vent)

    def blob(cxb: np.ndarray, cyb: np.ndarray, radius: np.ndarray, edge: np.ndarray | float) -> np.ndarray:
        d = np.sqrt((xr - cxb) ** 2 + (yr - cyb) ** 2) / radius
        return 1.0 - _smoothstep(1.0 - edge, 1.0 + edge, d)

    def inside(k: int, reach: float) -> tuple[np.ndarray, np.ndarray]:
        rho, phi = np.sqrt(rng.uniform(0.0, 1.0, (n, k))) * reach, rng.uniform(0.0, 2 * np.pi, (n, k))
        return (rho * np.cos(phi))[..., None, None].astype(np.float32), (rho * np.sin(phi))[..., None, None].astype(
            np.float32)

    # confounders, both classes: small bright spots and one faint, wide hyper-intensity
    sx, sy = inside(3, 0.6)
    spots_on = (np.arange(3)[None, :] < rng.integers(0, 4, n)[:, None]).astype(np.float32)[..., None, None]
    s_rad = (rng.uniform(0.018, 0.04, (n, 3)).astype(np.float32) + px)[..., None, None]
    s_amp = rng.uniform(0.25, 0.55, (n, 3)).astype(np.float32)[..., None, None]
    spots = (spots_on * s_amp * np.stack([blob(sx[:, k], sy[:, k], s_rad[:, k], 0.4) for k in range(3)], 1)).sum(1)
    fx, fy = inside(1, 0.55)
    faint = _col(rng.uniform(0.03, 0.10, n)) * blob(fx[:, 0], fy[:, 0], _col(rng.uniform(0.12, 0.25, n)), 0.6)

    # the tumour, class 1 only: compact bright core, irregular edge, darker rim
    tx, ty = inside(1, 0.58)
    t_rad = _col(rng.uniform(0.08, 0.19, n))
    t_amp = _col(rng.uniform(0.22, 0.5, n))
    wobble = 1.0 + 0.18 * _smooth_noise(rng, n, size, 6)
    core = blob(tx[:, 0], ty[:, 0], t_rad * wobble, 0.25)
    rim = blob(tx[:, 0], ty[:, 0], 1.5 * t_rad * wobble, 0.3) - core
    tumour = _col(labels.astype(np.float32)) * (t_amp * core - 0.07 * rim)

    bias = 1.0 + 0.12 * _smooth_noise(rng, n, size, 2)
    gain = _col(rng.uniform(0.8, 1.2, n))
    signal = gain * bias * (brain_mask * (brain + spots + faint + tumour) + skull * _col(rng.uniform(0.6, 0.9, n)))
    sigma = _col(rng.uniform(0.015, 0.045, n))
    noisy = np.hypot(signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32),
                     sigma * rng.standard_normal(signal.shape, dtype=np.float32))
    return np.clip(noisy, 0.0, 1.0).astype(np.float32), labels


def make_synthetic(
    n: int, *, size: int = 64, channels: int = 1, seed: int = 0, progress: Progress | None = None,
) -> tuple[ImageTable, DataReport]:
    """``n`` synthetic slices: images (n, size, size, channels) uint8 (grey replicated for RGB), labels (n,).

    ids are "synthetic:<seed>:<i>", origin "synthetic". Raises ValueError for n < 2 or a bad size.
    """
    check_size_channels(size, channels)
    if n < 2:
        raise ValueError(f"the synthetic task needs at least 2 images, got {n}")
    chunks = -(-n // CHUNK)
    images = np.empty((chunks * CHUNK, size, size), dtype=np.uint8)
    labels = np.empty(chunks * CHUNK, dtype=np.int64)
    for k in range(chunks):
        x, y = synthetic_chunk(seed, k, size)
        images[k * CHUNK:(k + 1) * CHUNK] = np.rint(x * 255.0).astype(np.uint8)
        labels[k * CHUNK:(k + 1) * CHUNK] = y
        report(progress, "generating synthetic images", min((k + 1) * CHUNK, n), n)
    images = np.repeat(images[:n, :, :, None], channels, axis=3)
    table = ImageTable(images=images, labels=labels[:n], class_names=SYNTHETIC_CLASSES,
                       ids=tuple(f"synthetic:{seed}:{i}" for i in range(n)), origin=("synthetic",) * n,
                       name="synthetic")
    counts = table.class_counts()
    data_report = DataReport(
        task="synthetic", source=SYNTHETIC_SOURCE, synthetic=True, counts={"synthetic": dict(counts)},
        sizes={f"{size}x{size}": n}, kept=dict(counts),
        notes=[f"generated from seed {seed} (chunks of {CHUNK}, numpy_rng(seed, {_PURPOSE!r}, chunk)); "
               "not real data", _NO_NEAR_DUPLICATES],
        preprocessing={"size": size, "channels": channels, "resample": "rendered at size",
                       "colour": "grey" if channels == 1 else "grey replicated to RGB"},
        near_duplicates={"computed": False, "groups": 0, "images_in_groups": 0, "mixed_label_groups": 0,
                         "examples": [], "note": _NO_NEAR_DUPLICATES},
    )
    log.info("generated %d synthetic images (%dx%d, seed %d)", n, size, size, seed)
    return table, data_report
