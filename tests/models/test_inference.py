"""One home for a model's mode and predictions (models/inference.py): every submodule's mode restored, the labels
equal to a plain forward pass's argmax whatever the batching, memory format or precision, no gradient kept."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from fedsafe.models.inference import eval_mode, predict, train_mode
from fedsafe.precision import autocast, resolve_precision

SRC = Path(__file__).resolve().parents[2] / "src" / "fedsafe"


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def _images(n: int = 13) -> torch.Tensor:
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("batch_size", [None, 1, 4, 13, 100])
@pytest.mark.parametrize("channels_last", [False, True])
def test_predict_is_the_argmax_of_one_forward_pass_in_eval_mode(batch_size, channels_last):
    net, x = _net(), _images()
    net.eval()
    with torch.no_grad():
        expected = net(x).argmax(1)
    net.train()
    got = predict(net, x, batch_size=batch_size, channels_last=channels_last)
    assert got.dtype == torch.long and torch.equal(got, expected)
    assert net.training and all(m.training for m in net.modules())


def test_predict_in_auto_precision_is_the_resolved_precisions_forward():
    net, x = _net().eval(), _images()
    prec = resolve_precision("auto")
    with torch.no_grad(), autocast(prec):
        expected = net(x).argmax(1)
    assert torch.equal(predict(net, x, precision="auto"), expected)


def test_predict_keeps_no_graph_and_takes_an_empty_set():
    net, x = _net(), _images().requires_grad_()
    assert not predict(net, x).requires_grad
    assert predict(net, x[:0]).shape == (0,)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        predict(net, x, batch_size=0)


@pytest.mark.parametrize(("context", "inside"), [(eval_mode, False), (train_mode, True)])
def test_a_mode_change_restores_each_submodules_own_mode(context, inside):
    net = _net()
    net.train()
    net[1].eval()  # a frozen batch norm in a training model stays frozen
    before = [m.training for m in net.modules()]
    with context(net):
        assert all(m.training is inside for m in net.modules())
    assert [m.training for m in net.modules()] == before


def test_the_mode_is_restored_when_the_block_raises():
    net = _net().train()
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError
    assert net.training


def test_one_definition_of_each_in_the_package():
    names = ("eval_mode", "train_mode", "predict")
    defs = {n: [str(f.relative_to(SRC)) for f in sorted(SRC.rglob("*.py"))
                for node in ast.walk(ast.parse(f.read_text()))
                if isinstance(node, ast.FunctionDef) and node.name == n] for n in names}
    assert defs == {n: ["models/inference.py"] for n in names}
