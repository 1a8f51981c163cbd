"""The MRI reader (listing, tasks, pooling, de-duplication) and image decoding (decode.py)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from fedsafe.data.decode import decode_files, decode_image, resize_images
from fedsafe.data.mri import MRI_TASKS, list_mri_files, read_mri

# --- listing ---------------------------------------------------------------------------------------------


def test_listing_is_sorted_labelled_and_hashed(make_mri_tree):
    root = make_mri_tree()

    files = list_mri_files(root, "meningioma")

    assert [f.origin for f in files] == ["train"] * 6 + ["test"] * 4
    assert [f.class_name for f in files[:6]] == ["no_tumor"] * 3 + ["meningioma_tumor"] * 3
    assert [f.label for f in files[:6]] == [0, 0, 0, 1, 1, 1]
    assert files[0].path.name == "no (1).jpg"  # spaces and parentheses kept as they are
    assert files[0].sha256 == hashlib.sha256(files[0].path.read_bytes()).hexdigest()
    assert files == list_mri_files(root, "meningioma")


def test_tasks_select_their_classes(make_mri_tree):
    root = make_mri_tree()

    glioma = list_mri_files(root, "glioma")
    four = list_mri_files(root, "brain-tumor-4class")

    assert {f.class_name: f.label for f in glioma} == {"no_tumor": 0, "glioma_tumor": 1}
    assert {f.class_name: f.label for f in four} == {
        "glioma_tumor": 0, "meningioma_tumor": 1, "no_tumor": 2, "pituitary_tumor": 3}
    assert len(four) == 20
    assert MRI_TASKS["brain-tumor-4class"] == tuple(sorted(MRI_TASKS["brain-tumor-4class"]))


def test_listing_ignores_hidden_and_non_image_files(make_mri_tree):
    root = make_mri_tree()
    (root / "Training" / "no_tumor" / ".DS_Store").write_bytes(b"x")
    (root / "Training" / "no_tumor" / "notes.txt").write_text("x")

    assert len(list_mri_files(root, "meningioma")) == 10


@pytest.mark.parametrize(("setup", "match"), [
    ("missing", "MRI data root not found"),
    ("empty", "no Training or Testing folder"),
    ("no-class", "class 'meningioma_tumor' has no image files"),
])
def test_listing_errors_name_the_problem(tmp_path, make_mri_tree, setup, match):
    if setup == "missing":
        root = tmp_path / "nowhere"
    elif setup == "empty":
        root = tmp_path / "empty"
        root.mkdir()
    else:
        root = make_mri_tree({"Training": {"no_tumor": 2}, "Testing": {"no_tumor": 1}})

    with pytest.raises(ValueError, match=match):
        list_mri_files(root, "meningioma")


def test_unknown_task_lists_the_known_ones(make_mri_tree):
    with pytest.raises(ValueError, match="known: meningioma, glioma, brain-tumor-4class"):
        list_mri_files(make_mri_tree(), "astrocytoma")


# --- reading ---------------------------------------------------------------------------------------------


def test_read_pools_splits_and_keeps_the_training_copy(make_mri_tree):
    root = make_mri_tree()
    # a Testing file that is a byte copy of a Training file, and a copy inside Training
    shutil.copy(root / "Training" / "no_tumor" / "no (1).jpg", root / "Testing" / "no_tumor" / "no (9).jpg")
    shutil.copy(root / "Training" / "no_tumor" / "no (2).jpg", root / "Training" / "no_tumor" / "no (8).jpg")

    table, report = read_mri(root, "meningioma", size=16, channels=1)

    assert len(table) == 10
    assert table.images.shape == (10, 16, 16, 1) and table.images.dtype == np.uint8
    assert len(set(table.ids)) == 10
    copied = hashlib.sha256((root / "Training" / "no_tumor" / "no (1).jpg").read_bytes()).hexdigest()
    assert table.origin[table.ids.index(copied)] == "train"
    assert report.duplicates["test_copies_of_train"] == 1
    assert report.duplicates["extra_copies_train"] == 1
    assert report.counts == {"train": {"no_tumor": 4, "meningioma_tumor": 3},
                             "test": {"no_tumor": 3, "meningioma_tumor": 2}}
    assert report.kept == {"no_tumor": 5, "meningioma_tumor": 5}
    assert report.sizes == {"24x20": 12}  # every listed file, copies included
    assert report.preprocessing["size"] == 16 and report.preprocessing["channels"] == 1


def test_unreadable_files_are_skipped_and_named(make_mri_tree):
    root = make_mri_tree()
    bad = root / "Testing" / "meningioma_tumor" / "me (1).jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated JPEG
    junk = root / "Training" / "no_tumor" / "no (2).jpg"
    junk.write_bytes(b"not an image at all")

    table, report = read_mri(root, "meningioma", size=8, channels=3)

    assert len(table) == 8
    assert {u["file"] for u in report.unreadable} == {str(bad), str(junk)}
    assert all(u["error"] for u in report.unreadable)
    assert table.images.shape[-1] == 3


def test_strict_raises_naming_the_file(make_mri_tree):
    root = make_mri_tree()
    junk = root / "Training" / "no_tumor" / "no (2).jpg"
    junk.write_bytes(b"GIF89a broken")

    with pytest.raises(ValueError, match=r"no \(2\)\.jpg"):
        read_mri(root, "meningioma", size=8, channels=1, strict=True)


def test_a_class_left_empty_after_reading_is_an_error(make_mri_tree):
    root = make_mri_tree()
    for path in (root / "Training" / "meningioma_tumor").iterdir():
        path.write_bytes(b"broken")
    for path in (root / "Testing" / "meningioma_tumor").iterdir():
        path.write_bytes(b"broken too " + path.name.encode())

    with pytest.raises(ValueError, match=rf"{root}.*'meningioma_tumor' is empty"):
        read_mri(root, "meningioma", size=8, channels=1)


@pytest.mark.realdata
def test_real_listing_matches_the_published_table(mri_root):
    files = list_mri_files(mri_root, "brain-tumor-4class")

    counts = {}
    for f in files:
        counts.setdefault(f.origin, {}).setdefault(f.class_name, 0)
        counts[f.origin][f.class_name] += 1

    assert counts == {
        "train": {"glioma_tumor": 826, "meningioma_tumor": 822, "no_tumor": 395, "pituitary_tumor": 827},
        "test": {"glioma_tumor": 100, "meningioma_tumor": 115, "no_tumor": 105, "pituitary_tumor": 74},
    }


@pytest.mark.realdata
def test_real_meningioma_table(real_meningioma):
    table, report, _ = real_meningioma

    assert len(table) == 1279
    assert table.class_counts() == {"no_tumor": 352, "meningioma_tumor": 927}
    assert table.images.shape == (1279, 32, 32, 1)
    assert len(set(table.ids)) == 1279
    assert sum(report.sizes.values()) == 1437
    assert report.unreadable == []
    assert 0 < table.images.mean() < 255  # real pictures, not blank


# --- decoding --------------------------------------------------------------------------------------------


def test_decode_grey_and_rgb_to_a_square(tmp_path, image_writer):
    path = image_writer(tmp_path / "a b (1).png", 5, size=(40, 30), fmt="PNG")

    grey, size = decode_image(path, size=12, channels=1)
    rgb, _ = decode_image(path, size=12, channels=3)

    assert size == (40, 30)
    assert grey.shape == (12, 12, 1) and rgb.shape == (12, 12, 3)
    assert grey.dtype == rgb.dtype == np.uint8
    expected = np.asarray(Image.open(path).convert("L").resize((12, 12), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(grey[..., 0], expected)


def test_downscale_is_antialiased(tmp_path):
    # a one-pixel checkerboard averages to mid-grey when shrunk with antialiasing (nearest would alias)
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    path = tmp_path / "board.png"
    Image.fromarray(board).save(path)

    small, _ = decode_image(path, size=8, channels=1)

    assert abs(float(small.mean()) - 127.5) < 3 and small.std() < 3


def test_decode_files_reports_progress_and_keeps_order(tmp_path, image_writer):
    paths = [image_writer(tmp_path / f"{i}.jpg", i) for i in range(40)]
    paths.insert(3, tmp_path / "missing.jpg")
    calls = []

    result = decode_files(paths, size=8, channels=1, progress=lambda *a: calls.append(a))

    np.testing.assert_array_equal(result.ok, [i for i in range(41) if i != 3])
    assert result.unreadable[0]["file"].endswith("missing.jpg")
    assert calls[0] == ("decoding images", 0, 41) and calls[-1] == ("decoding images", 41, 41)
    assert result.sizes == ["24x20"] * 40


def test_resize_images_matches_file_decoding(tmp_path, image_writer):
    path = image_writer(tmp_path / "x.png", 9, size=(28, 28), fmt="PNG")
    array = np.asarray(Image.open(path))[None]

    via_array = resize_images(array, size=10, channels=1)
    via_file, _ = decode_image(path, size=10, channels=1)

    np.testing.assert_array_equal(via_array[0], via_file)


@pytest.mark.parametrize(("size", "channels"), [(0, 1), (8, 2)])
def test_bad_size_or_channels(tmp_path, size, channels):
    with pytest.raises(ValueError, match="size|channels"):
        decode_files([tmp_path / "x.jpg"], size=size, channels=channels)
