import copy

import pytest
import torch

from fedsafe.models import MODELS, PaperCNN, build_model, conv_widths


def test_paper_model_matches_the_papers_sizes():
    m = PaperCNN(num_classes=2, in_channels=3, image_size=100, width=1.0)
    assert m.flat_features == 250 * 12 * 12 == 36000  # design §2
    assert [c[0].out_channels for c in m.features if isinstance(c, torch.nn.Sequential)] == [100, 150, 200, 200, 250,
                                                                                           250]
    linears = [layer for layer in m.classifier if isinstance(layer, torch.nn.Linear)]
    assert [(la.in_features, la.out_features) for la in linears] == [(36000, 64), (64, 32), (32, 16), (16, 8), (8, 2)]
    assert m.macs_per_image() == pytest.approx(3.6e9, rel=0.01)  # "about 3.6 GMAC per 100x100 image"


def test_macs_count_matches_a_hand_count_on_a_small_model():
    m = PaperCNN(num_classes=2, in_channels=1, image_size=16, width=0.04)
    c = conv_widths(0.04)  # (4, 6, 8, 8, 10, 10)
    convs = 16 * 16 * (1 * c[0] + c[0] * c[1]) * 9 + 8 * 8 * (c[1] * c[2] + c[2] * c[3]) * 9 \
        + 4 * 4 * (c[3] * c[4] + c[4] * c[5]) * 9
    fc = c[5] * 2 * 2 * 64 + 64 * 32 + 32 * 16 + 16 * 8 + 8 * 2
    assert m.macs_per_image() == convs + fc


def test_normalisation_is_inside_and_not_in_the_state_dict():
    m = PaperCNN(num_classes=2, in_channels=1, image_size=16, width=0.04, mean=(0.2,), std=(0.1,))
    assert set(m.state_dict()) == {n for n, _ in m.named_parameters()}
    x = torch.full((1, 1, 16, 16), 0.2)
    # At the mean, the first convolution sees zeros: its output is just its bias.
    conv = m.features[0][0]
    z = conv((x - m.mean) / m.std)
    assert torch.allclose(z[0, :, 5, 5], conv.bias, atol=1e-6)


def test_output_shape_and_registry():
    m = build_model("paper-cnn", num_classes=4, in_channels=3, image_size=32, width=0.1)
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    assert "paper-cnn" in MODELS
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet", num_classes=2, in_channels=1, image_size=16)


@pytest.mark.parametrize("kw, msg", [
    (dict(num_classes=1), "num_classes"), (dict(num_classes=2, in_channels=2), "in_channels"),
    (dict(num_classes=2, width=0), "width"), (dict(num_classes=2, image_size=4), "image_size"),
])
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PaperCNN(**kw)


def _conv_relu_pool(model):
    """The model's features as conv -> ReLU -> pool (the papers' order), sharing its parameters."""
    f = copy.deepcopy(model.features)
    for i in (1, 4, 7):
        f[i].append(torch.nn.ReLU(inplace=True))
    for i in (2, 5, 8):
        f[i] = torch.nn.MaxPool2d(2)
    return f


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pooling_before_relu_trains_bit_identically_to_relu_before_pooling(bf16, channels_last):
    torch.manual_seed(0)
    new = PaperCNN(num_classes=2, image_size=24, width=0.1, dropout=0.0)
    old = copy.deepcopy(new)
    old.features = _conv_relu_pool(new)
    assert list(old.state_dict()) == list(new.state_dict())
    x, y = torch.rand(16, 1, 24, 24), torch.randint(0, 2, (16,))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    opts = [torch.optim.Adam(m.parameters(), lr=3e-3) for m in (old, new)]
    for _ in range(4):
        grads = []
        for m, opt in zip((old, new), opts, strict=True):
            opt.zero_grad(set_to_none=True)
            xi = x.clone().requires_grad_(True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(m(xi), y)
            loss.backward()
            opt.step()
            grads.append(xi.grad)
        assert torch.equal(grads[0], grads[1])
    for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True):
        assert torch.equal(a, b)
