"""The step loop's gradient-function seam, the input memory format it keeps, and input_gradient."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsafe.attacks import bim, input_gradient, input_memory_format, iterative_attack, pgd, predict
from fedsafe.precision import to_channels_last

CL_STRIDES = (16 * 16, 1, 16, 1)  # channels-last strides of a (B, 1, 16, 16) tensor


def test_input_memory_format(make_small_cnn, make_linear):
    assert input_memory_format(make_small_cnn()) == torch.contiguous_format
    assert input_memory_format(to_channels_last(make_small_cnn())) == torch.channels_last
    assert input_memory_format(make_linear()) == torch.preserve_format
    # a 1x1 convolution of one channel has the same strides in both formats: the next convolution decides
    model = to_channels_last(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Conv2d(1, 4, 3)))
    assert model[0].weight.stride() == (1, 1, 1, 1) and input_memory_format(model) == torch.channels_last


@pytest.mark.parametrize("start", [None, "delta"])
def test_one_channel_input_takes_channels_last_strides_for_a_channels_last_model(make_small_cnn, make_images, start):
    nchw = make_small_cnn().double()
    cl = to_channels_last(copy.deepcopy(nchw))
    x = make_images(5, channels=1, dtype=torch.float64)
    assert x.is_contiguous() and x.stride() != CL_STRIDES
    delta = None if start is None else torch.full_like(x, 0.02)
    seen = []

    def spy(x_adv, labels):  # the input the model sees at every step
        seen.append(x_adv.stride())
        return input_gradient(cl, x_adv, labels)

    r = iterative_attack(cl, x, eps=0.05, alpha=0.01, steps=3, start=delta, gradient=spy)
    assert seen == [CL_STRIDES] * 3 and r.x_adv.stride() == CL_STRIDES
    # same values as on the NCHW model (up to float rounding of a different convolution kernel)
    ref = bim(nchw, x, eps=0.05, alpha=0.01, steps=3, start=delta)
    torch.testing.assert_close(r.x_adv, ref.x_adv, rtol=0, atol=1e-12)
    assert r.x_adv.is_contiguous()  # for C = 1 the memory order is NCHW's: only the strides' metadata differ


def test_nchw_model_keeps_nchw_strides_for_three_channels(make_small_cnn, make_images):
    model = make_small_cnn(in_channels=3)
    x = make_images(3, channels=3).contiguous(memory_format=torch.channels_last)
    r = bim(model, x, eps=0.03, alpha=0.01, steps=2)
    assert r.x_adv.is_contiguous() and r.x_adv.dtype == x.dtype


def test_the_loop_follows_any_gradient_function(cnn, x):
    # a constant (broadcast, stride-0) direction: every pixel climbs alpha a step until the eps-ball or 1 stops it
    def up(x_adv, labels):
        return torch.ones(1, 1, 1, 1).expand_as(x_adv)

    r = iterative_attack(cnn, x, eps=0.05, alpha=0.02, steps=4, gradient=up, gradients_per_step=3)
    torch.testing.assert_close(r.x_adv, (x + 0.05).clamp(max=1), rtol=0, atol=1e-6)
    assert (r.forward_backward, r.forwards) == (12, 1)


def test_a_gradient_function_can_descend(make_small_cnn, make_images):
    model, x = make_small_cnn().double(), make_images(8, channels=1, dtype=torch.float64)
    y = predict(model, x)

    def descend(x_adv, labels):
        return -input_gradient(model, x_adv, labels)

    r = iterative_attack(model, x, y, eps=0.05, alpha=0.01, steps=5, gradient=descend)
    loss = F.cross_entropy(model(r.x_adv), y).item()
    assert loss < F.cross_entropy(model(x), y).item()  # the sign step moved against the loss
    assert F.cross_entropy(model(bim(model, x, y, eps=0.05, alpha=0.01, steps=5).x_adv), y).item() > loss


def test_bad_gradients_per_step_raises(cnn, x):
    with pytest.raises(ValueError, match="gradients_per_step"):
        iterative_attack(cnn, x, eps=0.05, alpha=0.01, steps=1, gradients_per_step=0)


def test_input_gradient_with_replaced_parameters(make_small_cnn, make_images):
    model, x = make_small_cnn().double(), make_images(4, channels=1, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    other = make_small_cnn(seed=9).double()
    params = {n: p.detach() for n, p in other.named_parameters()}
    before = copy.deepcopy(model.state_dict())
    torch.testing.assert_close(input_gradient(model, x, y, parameters=params), input_gradient(other, x, y))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())


def test_pgd_result_is_unchanged_by_the_buffers(cnn, x):
    # the in-place loop against the out-of-place formula of one step, written out
    g = torch.Generator().manual_seed(0)
    r = pgd(cnn, x, eps=0.05, alpha=0.01, steps=1, generator=g)
    start = r.x_adv  # a second step from the first one's result, compared with the formula
    y = r.labels
    grad = input_gradient(cnn.eval(), start, y)
    expected = torch.min(torch.max(start + 0.01 * grad.sign(), x - 0.05), x + 0.05).clamp(0, 1)
    r2 = bim(cnn, x, y, eps=0.05, alpha=0.01, steps=1, start=start - x)
    torch.testing.assert_close(r2.x_adv, expected, rtol=0, atol=1e-7)
