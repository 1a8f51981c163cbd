"""Decoding every pixel mode to the right [0, 1] range: 16-bit, 32-bit int and float files are
scaled by their range, never clipped to white; files without a known range are unreadable, never blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedsafe.data.decode import UnmappableImageError, decode_files, decode_image, to_8bit, to_square
from fedsafe.data.mri import read_mri

RAMP16 = (np.arange(32 * 32, dtype=np.int64).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472


def _decode_full(path: Path) -> np.ndarray:
    """Decode at the source size (32x32), so no resampling hides the mapping."""
    return decode_image(path, size=32, channels=1)[0][..., 0]


def _expected8(values16: np.ndarray) -> np.ndarray:
    return np.rint(values16.astype(np.float64) / 257.0).astype(np.uint8)


def test_16bit_png_is_scaled_not_white(tmp_path):
    path = tmp_path / "ramp16.png"
    Image.fromarray(RAMP16).save(path)
    assert Image.open(path).mode == "I;16"

    grey = _decode_full(path)

    np.testing.assert_array_equal(grey, _expected8(RAMP16))
    assert grey.min() == 0 and grey.max() == 255 and len(np.unique(grey)) > 200


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_16bit_byte_orders(tmp_path, mode):
    dtype = ">u2" if mode == "I;16B" else "<u2"
    image = Image.frombytes(mode, (32, 32), RAMP16.astype(dtype).tobytes())

    np.testing.assert_array_equal(np.asarray(to_8bit(image)), _expected8(RAMP16))


def test_32bit_integer_tiff_holds_16bit_data(tmp_path):
    path = tmp_path / "i32.tif"
    Image.fromarray(RAMP16.astype(np.int32)).save(path)
    assert Image.open(path).mode == "I"

    np.testing.assert_array_equal(_decode_full(path), _expected8(RAMP16))


@pytest.mark.parametrize(("top", "scale"), [(1.0, 255.0), (255.0, 1.0), (60000.0, 1 / 257.0)])
def test_float_tiff_is_scaled_by_the_range_that_holds_it(tmp_path, top, scale):
    values = np.linspace(0, top, 32 * 32).reshape(32, 32).astype(np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"

    expected = np.clip(np.rint(values.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(_decode_full(path), expected)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of (..., 3) uint8, as float (the reference for "L")."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


RGB = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_ignored_not_composited(tmp_path, mode):
    rgba = np.concatenate([RGB, np.zeros((16, 16, 1), np.uint8)], axis=-1)  # fully transparent
    path = tmp_path / "a.png"
    image = Image.fromarray(rgba, "RGBA")
    (image if mode == "RGBA" else image.convert("LA")).save(path)

    grey = decode_image(path, size=16, channels=1)[0][..., 0]

    assert np.abs(grey - _luma(RGB)).max() <= 1.0  # the stored colour, not black or white


def test_palette_and_bilevel_files(tmp_path):
    palette = Image.fromarray(RGB).quantize(colors=16)
    palette.save(tmp_path / "p.png")
    bits = np.random.default_rng(1).random((16, 16)) > 0.5
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "p.png").mode == "P" and Image.open(tmp_path / "b.png").mode == "1"

    grey_p = decode_image(tmp_path / "p.png", size=16, channels=1)[0][..., 0]
    rgb_b = decode_image(tmp_path / "b.png", size=16, channels=3)[0]

    colours = np.array(palette.getpalette()[:48], dtype=np.uint8).reshape(16, 3)
    assert np.abs(grey_p - _luma(colours[np.asarray(palette)])).max() <= 1.0
    np.testing.assert_array_equal(rgb_b, np.repeat(bits[..., None] * 255, 3, axis=-1).astype(np.uint8))


def test_cmyk_and_lab_files_decode(tmp_path):
    Image.fromarray(RGB).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    lab = Image.fromarray(RGB).convert("LAB")

    grey_c = decode_image(tmp_path / "c.jpg", size=16, channels=1)[0][..., 0]
    grey_lab = to_square(lab, size=16, channels=1)  # Pillow converts LAB to RGB only: the fallback path

    assert np.abs(grey_c.astype(float) - _luma(RGB)).mean() < 12  # a lossy JPEG of the same picture
    assert grey_lab.shape == (16, 16, 1) and grey_lab.std() > 20


@pytest.mark.parametrize(("values", "match"), [
    (np.array([[0.0, np.nan]], np.float32), "NaN"),
    (np.array([[-3.0, 7.0]], np.float32), "inside none"),
    (np.array([[0.0, 1e6]], np.float32), "inside none"),
])
def test_floats_without_a_known_range_are_unmappable(values, match):
    with pytest.raises(UnmappableImageError, match=match):
        to_8bit(Image.fromarray(values))


def test_32bit_integers_above_16_bits_are_unmappable():
    with pytest.raises(UnmappableImageError, match="outside the 16-bit range"):
        to_8bit(Image.fromarray(np.array([[0, 70000]], np.int32)))


def test_unmappable_files_are_skipped_and_named(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(RAMP16).save(good)
    nan = tmp_path / "nan.tif"
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(nan)
    negative = tmp_path / "negative.tif"
    Image.fromarray(np.full((8, 8), -1.0, np.float32)).save(negative)

    result = decode_files([good, nan, negative], size=8, channels=3)

    assert result.ok.tolist() == [0]
    assert [u["file"] for u in result.unreadable] == [str(nan), str(negative)]
    assert all("UnmappableImageError" in u["error"] for u in result.unreadable)
    with pytest.raises(ValueError, match="nan.tif"):
        decode_files([nan], size=8, channels=1, strict=True)


def test_a_16bit_scan_in_an_mri_tree_is_read_as_a_picture(tmp_path):
    root = tmp_path / "mri"
    rng = np.random.default_rng(3)
    for split, cls, i in [("Training", "no_tumor", 1), ("Training", "meningioma_tumor", 1),
                          ("Testing", "no_tumor", 2), ("Testing", "meningioma_tumor", 2)]:
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 65536, (32, 32), dtype=np.uint16)).save(root / split / cls / f"s ({i}).png")
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(root / "Testing" / "no_tumor" / "bad.tif")

    table, report = read_mri(root, "meningioma", size=32, channels=1)

    assert len(table) == 4 and table.images.std() > 50  # noise over the whole range, not a blank image
    assert [Path(u["file"]).name for u in report.unreadable] == ["bad.tif"]
    assert not any("single grey level" in n for n in report.notes)
