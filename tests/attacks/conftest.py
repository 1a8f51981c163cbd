"""Tiny offline models and images for the attack tests (seeded without touching the global RNG)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsafe.models.cnn import PaperCNN


def seeded(factory, seed: int) -> nn.Module:
    """Build a module with a fixed seed; the global RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def tiny_cnn(seed: int = 0, *, in_channels: int = 3, num_classes: int = 3) -> PaperCNN:
    return seeded(lambda: PaperCNN(num_classes=num_classes, in_channels=in_channels, image_size=16, width=0.05),
                  seed)


def tiny_linear(seed: int = 0, *, in_channels: int = 3, num_classes: int = 3) -> nn.Module:
    return seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 16 * 16, num_classes)), seed)


def small_cnn(seed: int = 3, *, in_channels: int = 1, num_classes: int = 3) -> nn.Module:
    """A two-convolution CNN whose random initialisation already gives varied predictions (the PaperCNN at this
    size predicts one class everywhere and no attack moves it, so it cannot show a working attack)."""
    return seeded(lambda: nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, num_classes)), seed)


def images(n: int = 6, *, channels: int = 3, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 16, 16, generator=g, dtype=dtype)
    x[:, :, 0, :3] = 0.0  # pixels on the borders of [0, 1] exercise the clipping
    x[:, :, 1, :3] = 1.0
    return x


@pytest.fixture
def cnn() -> PaperCNN:
    return tiny_cnn()


@pytest.fixture
def linear() -> nn.Module:
    return tiny_linear()


@pytest.fixture
def x() -> torch.Tensor:
    return images()


@pytest.fixture
def make_cnn():
    return tiny_cnn


@pytest.fixture
def make_linear():
    return tiny_linear


@pytest.fixture
def make_small_cnn():
    return small_cnn


@pytest.fixture
def make_images():
    return images
