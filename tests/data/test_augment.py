import numpy as np
import pytest
import torch

from fedsafe.data.augment import (
    AugmentParams,
    apply_augment,
    augment_batch,
    normalise_stats,
    rotate_batch,
    rotation_grid,
    sample_augment_params,
)
from fedsafe.seeding import torch_generator


def _images(b: int = 6, c: int = 3, h: int = 20, w: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch_generator(seed, "test-images"))


def _disc(size: int = 33, radius: float = 10.0) -> torch.Tensor:
    """A centred disc with a one-pixel anti-aliased edge (a hard edge is itself changed by resampling)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = (size - 1) / 2
    r = ((yy - centre) ** 2 + (xx - centre) ** 2).float().sqrt()
    return (radius + 1 - r).clamp(0, 1)[None, None]


def test_identity_when_rotation_and_flip_are_off() -> None:
    x = _images()
    y = augment_batch(x, torch_generator(0, "aug"), max_rotation_deg=0.0, hflip_p=0.0)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    assert y.data_ptr() != x.data_ptr()


def test_flip_p1_equals_torch_flip() -> None:
    x = _images()
    y = augment_batch(x, torch_generator(0, "aug"), max_rotation_deg=0.0, hflip_p=1.0)
    torch.testing.assert_close(y, torch.flip(x, dims=(-1,)), rtol=0, atol=0)


def test_rotation_by_90_matches_rot90_and_180_on_non_square() -> None:
    x = _images(h=9, w=9)
    torch.testing.assert_close(rotate_batch(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), rtol=0, atol=1e-5)
    x = _images(h=6, w=10)
    torch.testing.assert_close(rotate_batch(x, 180.0), x.flip(-1, -2), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("h", "w"), [(12, 12), (7, 15)])
def test_rotation_grid_equals_affine_grid(h: int, w: int) -> None:
    angles = torch.tensor([-10.0, 0.0, 7.5, 90.0], dtype=torch.float64)
    flip = torch.tensor([False, True, True, False])
    rad, sign = torch.deg2rad(angles), 1.0 - 2.0 * flip.double()
    theta = torch.zeros(4, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = rad.cos() * sign, -rad.sin() * h / w
    theta[:, 1, 0], theta[:, 1, 1] = rad.sin() * sign * w / h, rad.cos()
    ref = torch.nn.functional.affine_grid(theta, [4, 1, h, w], align_corners=False)
    got = rotation_grid(angles, h, w, flip=flip, dtype=torch.float64)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_small_rotation_of_a_centred_disc_changes_little_but_a_bar_changes() -> None:
    disc = _disc()
    bar = torch.zeros_like(disc)
    bar[..., 15:18, 2:31] = 1.0
    for angle in (-10.0, 5.0, 10.0):
        disc_change = (rotate_batch(disc, angle) - disc).abs().mean()
        bar_change = (rotate_batch(bar, angle) - bar).abs().mean()
        assert disc_change < 0.015
        assert bar_change > 0.03 and bar_change > 3 * disc_change


def test_input_untouched_and_output_in_unit_range() -> None:
    x = _images(b=16)
    x[0] = 1.0
    x[1] = 0.0
    before = x.clone()
    y = augment_batch(x, torch_generator(1, "aug"))
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    # border padding: a constant image stays constant (no black corners)
    torch.testing.assert_close(y[0], torch.ones_like(y[0]))


def test_reproducible_with_the_same_generator_seed() -> None:
    x = _images(b=8)
    a = augment_batch(x, torch_generator(3, "aug", 0))
    b = augment_batch(x, torch_generator(3, "aug", 0))
    c = augment_batch(x, torch_generator(3, "aug", 1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


def test_channels_last_gives_the_same_values_and_keeps_the_format() -> None:
    x = _images(b=4, c=3, h=16, w=16)
    xl = x.contiguous(memory_format=torch.channels_last)
    a = augment_batch(x, torch_generator(2, "aug"))
    b = augment_batch(xl, torch_generator(2, "aug"))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert b.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_is_kept(dtype: torch.dtype) -> None:
    x = _images(b=3).to(dtype)
    y = augment_batch(x, torch_generator(0, "aug"))
    assert y.dtype == dtype and y.device == x.device


def test_params_are_uniform_angles_and_bernoulli_flips() -> None:
    p = sample_augment_params(20_000, torch_generator(0, "aug"), max_rotation_deg=10.0, hflip_p=0.5)
    a = p.angles_deg
    assert a.min() >= -10 and a.max() <= 10
    assert abs(a.mean().item()) < 0.15  # sd of the mean: 5.77 / sqrt(20000) = 0.04
    assert abs(a.std().item() - 10 / np.sqrt(3)) < 0.1
    assert abs(p.flip.double().mean().item() - 0.5) < 0.02


def test_apply_matches_per_image_reference() -> None:
    x = _images(b=5)
    params = AugmentParams(angles_deg=torch.tensor([-10.0, -3.0, 0.0, 4.5, 10.0], dtype=torch.float64),
                           flip=torch.tensor([True, False, True, False, True]))
    y = apply_augment(x, params)
    for i in range(5):
        ref = rotate_batch(x[i : i + 1], float(params.angles_deg[i]))
        ref = ref.flip(-1) if params.flip[i] else ref
        # the flip is folded into the float32 grid in apply_augment: equal up to grid rounding
        torch.testing.assert_close(y[i : i + 1], ref.clamp(0, 1), rtol=0, atol=1e-5)


def test_bad_inputs_raise() -> None:
    g = torch_generator(0, "aug")
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(3, 8, 8), g)
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), g)
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(1, 1, 8, 8), g, hflip_p=1.5)


def test_normalise_stats_matches_numpy_float_reference() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 8, 8, 3), dtype=np.uint8)
    mean, std = normalise_stats(images, chunk=5)
    ref = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=1e-12)
    assert mean.shape == std.shape == (3,)


def test_normalise_stats_constant_and_bad_input() -> None:
    mean, std = normalise_stats(np.full((2, 4, 4, 1), 51, np.uint8))
    np.testing.assert_allclose(mean, [0.2])
    np.testing.assert_allclose(std, [0.0])
    with pytest.raises(ValueError):
        normalise_stats(np.zeros((2, 4, 4, 1), np.float32))
    with pytest.raises(ValueError):
        normalise_stats(np.zeros((0, 4, 4, 1), np.uint8))
