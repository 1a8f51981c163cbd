"""The embedded synthetic task: shapes, labels, determinism, no global RNG, speed, and not-trivial signal."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fedsafe.data.synthetic import CHUNK, make_synthetic


def _best_threshold_accuracy(feature: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(feature)
    y = labels[order]
    # accuracy of "label 1 above the cut" for every cut, and of the reverse rule
    ones_above = y[::-1].cumsum()[::-1]
    zeros_below = np.r_[0, (1 - y).cumsum()[:-1]]
    acc = (ones_above + zeros_below) / len(y)
    return float(max(acc.max(), (1 - acc).max()))


def test_shapes_labels_and_report():
    table, report = make_synthetic(300, size=48, channels=1, seed=1)

    assert table.images.shape == (300, 48, 48, 1) and table.images.dtype == np.uint8
    assert table.class_names == ("no_tumor", "tumor")
    assert abs(int(table.labels.sum()) - 150) <= CHUNK // 2  # balanced within every full chunk
    assert report.synthetic is True and "synthetic" in report.source
    assert report.counts == {"synthetic": table.class_counts()}
    assert set(table.origin) == {"synthetic"} and table.ids[7] == "synthetic:1:7"
    assert 20 < table.images.mean() < 200


def test_rgb_replicates_grey():
    grey, _ = make_synthetic(10, size=32, channels=1, seed=2)
    rgb, _ = make_synthetic(10, size=32, channels=3, seed=2)

    np.testing.assert_array_equal(rgb.images, np.repeat(grey.images, 3, axis=3))


def test_deterministic_and_prefix_stable():
    a, _ = make_synthetic(300, size=32, seed=5)
    b, _ = make_synthetic(300, size=32, seed=5)
    prefix, _ = make_synthetic(130, size=32, seed=5)
    other, _ = make_synthetic(300, size=32, seed=6)

    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(prefix.images, a.images[:130])
    np.testing.assert_array_equal(prefix.labels, a.labels[:130])
    assert not np.array_equal(other.images, a.images)


def test_global_random_state_untouched():
    np_state, py_state = np.random.get_state(), random.getstate()

    make_synthetic(20, size=32, seed=0)

    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state


def test_fast_enough():
    make_synthetic(CHUNK, size=64, seed=0)  # warm-up
    start = time.perf_counter()
    make_synthetic(1000, size=64, seed=0)
    assert time.perf_counter() - start < 6.0  # ~1 s on an idle CPU; generous for a busy machine


def test_not_trivial_but_the_tumour_is_there():
    table, _ = make_synthetic(512, size=64, seed=3)
    x = table.images[..., 0].astype(np.float64) / 255.0
    y = table.labels

    # global statistics barely separate the classes (confounders in both) ...
    for feature in (x.mean(axis=(1, 2)), x.max(axis=(1, 2)), x.std(axis=(1, 2))):
        assert _best_threshold_accuracy(feature, y) < 0.7

    # ... but a crude blob detector (local mean minus surround, inside the head) already does well
    def blob_score(image: np.ndarray) -> float:
        pil = Image.fromarray(image)
        local = np.asarray(pil.filter(ImageFilter.BoxBlur(3)), dtype=np.float64)
        surround = np.asarray(pil.filter(ImageFilter.BoxBlur(9)), dtype=np.float64)
        return float((local - surround)[12:52, 12:52].max())

    score = np.array([blob_score(im) for im in table.images[..., 0]])
    assert _best_threshold_accuracy(score, y) > 0.75


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_images(n):
    with pytest.raises(ValueError, match="at least 2"):
        make_synthetic(n)
