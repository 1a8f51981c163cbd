"""The cost model's multiply-accumulates of a forward pass (reproduce/costs.py): an image folder's classes are
read from its folder, and the memo tells apart models that differ only in ``model.kwargs``."""

from __future__ import annotations

import sys

import pytest

from fedsafe.config import load_config
from fedsafe.reproduce.costs import macs_per_image

FACTORY = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, hidden):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * image_size * image_size, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))

    def macs_per_image(self):
        return self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features


def make(num_classes, in_channels, image_size, hidden=4):
    return Net(num_classes, in_channels, image_size, hidden)
'''


@pytest.fixture
def costs_model(tmp_path, monkeypatch):
    """``costs_model:make``, a two-layer net of ``hidden`` units, importable for this test only."""
    (tmp_path / "costs_model.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "costs_model:make"
    sys.modules.pop("costs_model", None)


def expected(classes: int, hidden: int, *, side: int = 8, channels: int = 1) -> float:
    return float(channels * side * side * hidden + hidden * classes)


def test_an_image_folder_counts_the_classes_of_its_folder(tmp_path, costs_model):
    root = tmp_path / "imgs"
    for cls in ("a", "b", "c"):
        (root / cls).mkdir(parents=True)
    common = [f"model.name={costs_model}", "task.image_size=8", "task.channels=1", "model.kwargs.hidden=4"]
    folder = load_config(overrides=["task.name=image-folder", f"task.data_root={root}", *common])
    absent = load_config(overrides=["task.name=image-folder", f"task.data_root={tmp_path / 'none'}", *common])
    memo: dict = {}
    assert macs_per_image(folder, memo) == expected(3, 4)
    assert macs_per_image(absent, memo) == expected(2, 4)  # the folder is not there yet: the fewest classes, 2


def test_models_that_differ_only_in_their_kwargs_are_not_mixed_up(costs_model):
    common = ["task.name=synthetic", f"model.name={costs_model}", "task.image_size=8", "task.channels=1"]
    memo: dict = {}
    small = macs_per_image(load_config(overrides=[*common, "model.kwargs.hidden=4"]), memo)
    large = macs_per_image(load_config(overrides=[*common, "model.kwargs.hidden=8"]), memo)
    assert (small, large) == (expected(2, 4), expected(2, 8))
