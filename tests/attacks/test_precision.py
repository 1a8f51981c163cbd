from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsafe.precision import autocast, cpu_has_fast_bf16, resolve_precision, to_channels_last


def test_resolve_precision():
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") == ("bf16" if cpu_has_fast_bf16() else "fp32")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


def test_autocast_bf16_and_fp32():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("fp32"):
        assert (a @ b).dtype == torch.float32


def test_to_channels_last():
    t = torch.randn(2, 3, 4, 4)
    c = to_channels_last(t)
    assert c.is_contiguous(memory_format=torch.channels_last) and torch.equal(c, t)
    assert to_channels_last(torch.randn(3)).shape == (3,)
    conv = nn.Conv2d(3, 2, 3)
    assert to_channels_last(conv).weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(TypeError):
        to_channels_last(3)
