"""Shared fixtures: the real data beside the repository (../shared/data), skipped with a reason when absent.

The folder is found from ``$FEDSAFE_SHARED_DATA`` or, by default, as ``<repo>/../shared/data``. Tests only
read it; nothing is copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared_root() -> Path:
    env = os.environ.get("FEDSAFE_SHARED_DATA")
    return Path(env).expanduser() if env else _DEFAULT_SHARED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (``brain-tumor-mri/``, ``medmnist/``); skips when it is not there."""
    root = _shared_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set FEDSAFE_SHARED_DATA to its folder)")
    return root


@pytest.fixture(scope="session")
def mri_root(shared_data: Path) -> Path:
    """The brain-tumour MRI folder (Kaggle layout); skips when absent."""
    root = shared_data / "brain-tumor-mri"
    if not (root / "Training").is_dir():
        pytest.skip(f"brain-tumour MRI data not found at {root}")
    return root


@pytest.fixture(scope="session")
def breastmnist_npz(shared_data: Path) -> Path:
    """The shared BreastMNIST npz; skips when absent."""
    path = shared_data / "medmnist" / "breastmnist.npz"
    if not path.is_file():
        pytest.skip(f"BreastMNIST not found at {path}")
    return path


@pytest.fixture(scope="session")
def real_meningioma(mri_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real meningioma task read once per session at 32x32 grey: (table, report, cache_dir).

    Decoding ~1280 JPEGs takes a few seconds; later reads of the same task hit this cache folder.
    """
    from fedsafe.data.tasks import load_task

    cache = tmp_path_factory.mktemp("fedsafe-cache")
    table, report = load_task("meningioma", data_root=mri_root, image_size=32, channels=1, cache_dir=cache)
    return table, report, cache


def write_image(path: Path, index: int, *, size: tuple[int, int] = (24, 20), fmt: str = "JPEG") -> Path:
    """Write a small RGB image whose bytes depend on ``index`` (distinct files, distinct hashes)."""
    import numpy as np
    from PIL import Image

    w, h = size
    ramp = (np.arange(w * h, dtype=np.int64).reshape(h, w) * 3 + index * 37) % 256
    array = np.stack([ramp, np.full_like(ramp, index % 256), ramp[::-1]], axis=-1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


@pytest.fixture
def make_mri_tree(tmp_path: Path):
    """A factory for tiny Kaggle-layout trees: ``make({"Training": {"no_tumor": 3, ...}, ...}) -> root``.

    Without counts: 3 Training and 2 Testing files in each of the four classes.

    File names have spaces and parentheses, like the real ones ("no (1).jpg").
    """
    counter = iter(range(1, 1_000_000))

    def make(counts: dict[str, dict[str, int]] | None = None, name: str = "mri") -> Path:
        counts = small_counts() if counts is None else counts
        root = tmp_path / name
        for split, per_class in counts.items():
            for cls, n in per_class.items():
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    write_image(root / split / cls / f"{cls[:2]} ({i + 1}).jpg", next(counter))
        return root

    return make


FOUR_CLASSES = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")


def small_counts(train: int = 3, test: int = 2) -> dict[str, dict[str, int]]:
    """Per-split, per-class counts for a tiny four-class tree."""
    return {"Training": dict.fromkeys(FOUR_CLASSES, train), "Testing": dict.fromkeys(FOUR_CLASSES, test)}


@pytest.fixture
def image_writer():
    """``write_image(path, index, size=(w, h), fmt="JPEG")``: a small image with index-dependent bytes."""
    return write_image


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The tests' models are tiny: one intra-op thread is fastest and avoids OpenMP spinning on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _torch_global_generator_seeded():
    """torch seeds its global generator at random in every process, so a test that draws from it (a model's
    initial weights, ``torch.rand`` without a generator) could pass or fail by chance from run to run. Every test
    starts from seed 0 instead, forked so that nothing leaks into the next test."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
