"""Exact de-duplication: the keep rule, the counts, label conflicts; and the published counts on the real data."""

from __future__ import annotations

import numpy as np
import pytest

from fedsafe.data.dedup import deduplicate
from fedsafe.data.mri import list_mri_files


def test_keeps_the_train_copy_even_when_test_comes_first():
    hashes = ["a", "a", "b"]
    result = deduplicate(hashes, [0, 0, 1], ["test", "train", "test"])

    np.testing.assert_array_equal(result.keep, [1, 2])
    assert result.counts["test_copies_of_train"] == 1
    assert result.counts["removed"] == 1


def test_ties_within_an_origin_keep_the_first_listed():
    result = deduplicate(["x", "x", "x"], [1, 1, 1], ["train", "train", "train"])

    np.testing.assert_array_equal(result.keep, [0])
    assert result.counts["extra_copies_train"] == 2
    assert result.counts["groups"] == 1 and result.counts["files_in_groups"] == 3


def test_counts_match_a_hand_worked_example():
    # train: a a b ; test: a c c d  ->  test copies of train: 1 (a); extra train: 1; extra test: 1 (c)
    hashes = ["a", "a", "b", "a", "c", "c", "d"]
    origins = ["train"] * 3 + ["test"] * 4
    result = deduplicate(hashes, [0] * 7, origins)

    assert result.counts == {
        "test_copies_of_train": 1, "extra_copies_train": 1, "extra_copies_test": 1, "groups": 2,
        "files_in_groups": 5, "label_conflicts": 0, "removed": 3,
    }
    np.testing.assert_array_equal(result.keep, [0, 2, 4, 6])


def test_label_conflict_is_an_error_naming_the_files():
    with pytest.raises(ValueError, match=r"a\.jpg \(label 0\), b\.jpg \(label 1\)"):
        deduplicate(["h", "h", "k"], [0, 1, 0], ["train", "test", "train"], names=["a.jpg", "b.jpg", "c.jpg"])


def test_label_conflict_dropped_under_the_flag():
    result = deduplicate(["h", "h", "k"], [0, 1, 0], ["train", "test", "train"], drop_conflicts=True)

    np.testing.assert_array_equal(result.keep, [2])
    assert result.counts["label_conflicts"] == 1 and result.counts["removed"] == 2
    assert result.conflicts[0]["labels"] == ["0", "1"]


def test_input_lengths_must_agree():
    with pytest.raises(ValueError, match="same length"):
        deduplicate(["a", "b"], [0], ["train", "train"])


@pytest.mark.realdata
def test_published_duplicate_counts_on_the_shared_mri_copy(mri_root):
    files = list_mri_files(mri_root, "brain-tumor-4class")

    result = deduplicate([f.sha256 for f in files], [f.label for f in files], [f.origin for f in files])

    assert len(files) == 3264
    assert result.counts["test_copies_of_train"] == 88
    assert result.counts["extra_copies_train"] == 93
    assert result.counts["extra_copies_test"] == 80
    assert result.counts["groups"] == 166 and result.counts["files_in_groups"] == 403  # SOURCE.md
    assert result.counts["label_conflicts"] == 0
    assert len(result.keep) == 3027
    kept_origins = {files[i].origin for i in result.keep}
    test_hashes_in_train = {f.sha256 for f in files if f.origin == "train"}
    assert all(files[i].origin == "train" for i in result.keep if files[i].sha256 in test_hashes_in_train)
    assert kept_origins == {"train", "test"}


@pytest.mark.realdata
@pytest.mark.parametrize(("task", "n_files", "n_kept", "kept_per_class"), [
    ("meningioma", 1437, 1279, {"no_tumor": 352, "meningioma_tumor": 927}),
    ("glioma", 1426, 1254, {"no_tumor": 352, "glioma_tumor": 902}),
])
def test_pooled_deduplicated_counts_per_task(mri_root, task, n_files, n_kept, kept_per_class):
    files = list_mri_files(mri_root, task)

    result = deduplicate([f.sha256 for f in files], [f.label for f in files], [f.origin for f in files])

    assert len(files) == n_files
    assert len(result.keep) == n_kept
    kept = {c: sum(1 for i in result.keep if files[i].class_name == c) for c in kept_per_class}
    assert kept == kept_per_class
