"""Same-scan grouping (design §1.4): the exact pair search against a brute force, slices grouped and distinct images
not, the union with near-duplicates, the cache key, the reader's report, the group-aware split and `data check`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fedsafe.cli.data import app
from fedsafe.data.grouping import grouping_key, join_groups
from fedsafe.data.mri import list_mri_files, read_mri
from fedsafe.data.neardup import NearDuplicates, NearDuplicateSettings, phashes
from fedsafe.data.scans import ScanPairs, ScanSettings, close_pairs, find_same_scan
from fedsafe.data.splits import make_splits, straddling_groups

from ._images import smooth_image


def smooth(seed: int, size: int = 256, lo: int = 40, hi: int = 220) -> np.ndarray:
    """The shared smooth picture, at 256 px by default."""
    return smooth_image(seed, size, lo, hi)


def neighbour_slices(seed: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One 'scan': a picture and two copies with +-12 grey levels of noise each: 0.025-0.031 apart at 256 px (not
    near-duplicates, like the slices the issue found), 0.011-0.016 at 128 px."""
    a = smooth(seed)
    return [a] + [np.clip(a.astype(np.int64) + rng.integers(-12, 13, a.shape), 0, 255).astype(np.uint8)
                  for _ in range(2)]


def brute_force_mad(images: np.ndarray) -> np.ndarray:
    """(N, N) mean |a - b| over all pixels, in float64, one pair at a time."""
    x = images.reshape(len(images), -1).astype(np.float64)
    return np.array([[np.abs(a - b).mean() for b in x] for a in x])


# --- the search and the rule -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_close_pairs_equal_a_brute_force(seed):
    rng = np.random.default_rng(seed)
    # 40 images of 64x64 around 8 patterns: many pairs near the limit, on both sides
    patterns = rng.integers(0, 1021, (8, 64, 64))
    images = np.clip(patterns[rng.integers(0, 8, 40)] + rng.integers(-30, 31, (40, 64, 64)), 0, 1020)
    images[5] = images[3]  # an identical pair (difference 0)
    reference = brute_force_mad(images) / 1020
    limit = float(np.quantile(reference[np.triu_indices(40, 1)], 0.2))

    pairs, diff = close_pairs(images, limit, peak=1020)

    i, j = np.nonzero(np.triu(reference < limit, 1))
    assert len(i) > 20
    np.testing.assert_array_equal(pairs, np.stack([i, j], axis=1))
    np.testing.assert_allclose(diff, reference[i, j], rtol=0, atol=1e-12)


def test_close_pairs_of_uint8_images_do_not_wrap_around():
    images = np.array([np.zeros((8, 8)), np.full((8, 8), 255), np.full((8, 8), 3)], dtype=np.uint8)

    pairs, diff = close_pairs(images, 0.05)

    assert pairs.tolist() == [[0, 2]] and diff[0] == pytest.approx(3 / 255)


def test_slices_of_one_scan_are_grouped_and_distinct_pictures_are_not():
    rng = np.random.default_rng(0)
    images = np.stack(neighbour_slices(1, rng) + neighbour_slices(2, rng) + [smooth(3), smooth(4)])

    scans = find_same_scan(images, phashes(images))

    assert scans.pairs.tolist() == [[0, 1], [0, 2], [1, 2], [3, 4], [3, 5], [4, 5]]
    assert np.all(scans.differences < 0.025) and scans.counts["groups"] == 2
    assert (scans.counts["images_in_groups"], scans.counts["largest_group"]) == (6, 3)


def test_the_loose_threshold_needs_close_hashes():
    a = smooth(1)
    brighter = (a + 8).astype(np.uint8)  # every pixel +8 grey levels: difference 8/255 = 0.031, same pHash
    dark = [smooth(5, lo=0, hi=28), smooth(6, lo=0, hi=28)]  # two dark pictures, far apart in pHash
    images = np.stack([a, brighter, *dark])
    hashes = phashes(images)
    diff = brute_force_mad(images.reshape(4, 128, 2, 128, 2).mean(axis=(2, 4))) / 255
    assert 0.025 <= diff[0, 1] < 0.035 and 0.025 <= diff[2, 3] < 0.035  # both pairs between the two thresholds

    default = find_same_scan(images, hashes)
    strict = find_same_scan(images, hashes, ScanSettings(loose_threshold=0.025))
    any_hash = find_same_scan(images, hashes, ScanSettings(hash_distance=64))

    assert default.pairs.tolist() == [[0, 1]] and default.candidates == 2
    assert strict.pairs.tolist() == [] and any_hash.pairs.tolist() == [[0, 1], [2, 3]]


@pytest.mark.parametrize(("kw", "match"), [({"threshold": 0}, "threshold"), ({"threshold": 1.5}, "threshold"),
                                           ({"loose_threshold": 0.01}, "loose threshold"),
                                           ({"hash_distance": 65}, "hash distance"),
                                           ({"hash_distance": True}, "hash distance")])
def test_bad_settings_are_one_line_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ScanSettings(**kw)


def test_odd_or_colour_images_are_refused():
    with pytest.raises(ValueError, match="S even"):
        find_same_scan(np.zeros((2, 15, 15), np.uint8), np.zeros(2, np.uint64))
    with pytest.raises(ValueError, match="2 hashes for 3 images"):
        find_same_scan(np.zeros((3, 16, 16), np.uint8), np.zeros(2, np.uint64))


def test_groups_join_both_kinds_of_pair():
    near = NearDuplicates(groups=np.array([0, 0, 2, 3, 4, 5]), pairs=np.array([[0, 1]]), differences=np.array([0.01]),
                          hash_distances=np.array([1]), candidates=1, settings=NearDuplicateSettings())
    scans = ScanPairs(n=6, pairs=np.array([[0, 1], [1, 2], [2, 3]]), differences=np.array([0.01, 0.02, 0.03]),
                      hash_distances=np.array([1, 3, 9]), candidates=4, settings=ScanSettings())

    joined = join_groups(near, scans)
    summary = joined.summary(np.array([0, 0, 0, 0, 1, 1]), [f"f{i}" for i in range(6)])

    assert joined.groups.tolist() == [0, 0, 0, 0, 4, 5]  # 0-1 re-encoded, 1-2 and 2-3 slices: one group
    assert joined.counts == {"groups": 1, "images_in_groups": 4, "largest_group": 4}
    assert join_groups(near, None).groups.tolist() == [0, 0, 2, 3, 4, 5]
    same = summary["same_scan"]
    assert (same["confirmed_pairs"], same["pairs_beyond_near_duplicates"], same["candidate_pairs"]) == (3, 2, 4)
    assert [(e["a"], e["b"], e["difference"], e["hash_distance"]) for e in same["examples"]] == [
        ("f1", "f2", 0.02, 3), ("f2", "f3", 0.03, 9)]  # the re-encoded pair 0-1 is not an example of a slice
    assert summary["split_groups"] == {"groups": 1, "images_in_groups": 4, "largest_group": 4,
                                       "mixed_label_groups": 0}
    assert (summary["groups"], summary["images_in_groups"]) == (1, 2)  # the near-duplicates' own counts


def test_the_cache_key_follows_both_settings():
    near = NearDuplicateSettings()
    base = grouping_key(["a", "b"], near, ScanSettings())

    assert grouping_key(["b", "a"], near, ScanSettings()) == base
    assert grouping_key(["a", "b"], near, ScanSettings(threshold=0.02)) != base
    assert grouping_key(["a", "b"], near, ScanSettings(hash_distance=8)) != base
    assert grouping_key(["a", "b"], near, None) != base
    assert grouping_key(["a", "b"], NearDuplicateSettings(threshold=0.03), ScanSettings()) != base


# --- files on disk ---------------------------------------------------------------------------------------


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _scan_tree(root: Path) -> Path:
    """A meningioma tree: 4 scans of 3 slices (two per class, slices spread over Training and Testing) and 12
    distinct pictures (3 a class and split)."""
    rng = np.random.default_rng(0)
    for split in ("Training", "Testing"):
        for cls in ("no_tumor", "meningioma_tumor"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
    for k in range(4):
        cls = ("no_tumor", "meningioma_tumor")[k % 2]
        for s, image in enumerate(neighbour_slices(100 + k, rng)):
            split = "Testing" if s == 2 else "Training"
            (root / split / cls / f"scan{k} ({s + 1}).png").write_bytes(_png(image))
    seed = iter(range(200, 300))
    for split in ("Training", "Testing"):
        for cls in ("no_tumor", "meningioma_tumor"):
            for i in range(3):
                (root / split / cls / f"other ({i + 1}).png").write_bytes(_png(smooth(next(seed))))
    return root


def _names(root: Path, ids: tuple[str, ...]) -> list[str]:
    by_hash = {f.sha256: str(f.path.relative_to(root)) for f in list_mri_files(root, "meningioma")}
    return [by_hash[h] for h in ids]


def test_reader_groups_scans_reports_them_and_splits_keep_them_whole(tmp_path):
    root = _scan_tree(tmp_path / "mri")

    table, report = read_mri(root, "meningioma", size=16, channels=1, cache_dir=tmp_path / "cache")
    plain, plain_report = read_mri(root, "meningioma", size=16, channels=1, same_scan=None)

    names = _names(root, table.ids)
    scan_of = {n: n.split("/")[-1].split(" ")[0] for n in names if "scan" in n}
    for scan in set(scan_of.values()):
        members = [i for i, n in enumerate(names) if scan_of.get(n) == scan]
        assert len(members) == 3 and len(set(table.groups[members].tolist())) == 1
    assert len(set(table.groups.tolist())) == 4 + 12
    assert len(set(plain.groups.tolist())) == len(plain)  # without the scan search every image is alone here
    same, joined = report.near_duplicates["same_scan"], report.near_duplicates["split_groups"]
    assert (same["computed"], same["groups"], same["images_in_groups"], same["confirmed_pairs"]) == (True, 4, 12, 12)
    assert same["pairs_beyond_near_duplicates"] == 12  # no two slices here are re-encodings of one picture
    assert same["threshold"] == 0.025 and same["loose_threshold"] == 0.035 and same["hash_distance"] == 10
    assert {(e["a"].split(" ")[0], e["b"].split(" ")[0]) for e in same["examples"]} <= {
        (f"{s}/{c}/scan{k}", f"{t}/{c}/scan{k}") for k in range(4) for c in ("no_tumor", "meningioma_tumor")
        for s in ("Training", "Testing") for t in ("Training", "Testing")}
    assert joined == {"groups": 4, "images_in_groups": 12, "largest_group": 3, "mixed_label_groups": 0}
    assert any("same scan (adjacent slices): 12 pair(s), 4 group(s)" in n for n in report.notes)
    assert plain_report.near_duplicates["same_scan"] == {"computed": False}

    kw = {"num_clients": 2, "client_test_size": 3, "server_size": 3, "global_test_size": 4, "partition": "iid"}
    for seed in range(20):
        grouped = make_splits(table.labels, groups=table.groups, rng=np.random.default_rng(seed), **kw)
        assert straddling_groups(grouped, table.groups) == 0
        grouped.check_disjoint()
    cut = [straddling_groups(make_splits(plain.labels, groups=plain.groups, rng=np.random.default_rng(s), **kw),
                             table.groups) for s in range(20)]
    assert max(cut) > 0  # without the scan groups, some seeds cut a scan


def test_grouping_is_cached_and_another_scan_setting_is_not_reused(tmp_path):
    root = _scan_tree(tmp_path / "mri")
    cache = tmp_path / "cache"

    first, r1 = read_mri(root, "meningioma", size=8, channels=1, cache_dir=cache)
    again, r2 = read_mri(root, "meningioma", size=8, channels=1, cache_dir=cache)
    strict, r3 = read_mri(root, "meningioma", size=8, channels=1, cache_dir=cache,
                          same_scan=ScanSettings(threshold=0.001, loose_threshold=0.001))

    assert any("grouping read from the cache" in n for n in r2.notes)
    assert not any("grouping read from the cache" in n for n in r3.notes)
    np.testing.assert_array_equal(first.groups, again.groups)
    assert r1.near_duplicates == r2.near_duplicates
    assert r3.near_duplicates["same_scan"]["groups"] == 0 and len(set(strict.groups.tolist())) == len(strict)
    assert len(list(cache.glob("meningioma-near-*.npz"))) == 2


def test_data_check_shows_same_scan_pairs_and_split_groups(tmp_path):
    root = _scan_tree(tmp_path / "mri")

    result = CliRunner().invoke(app, ["check", str(root), "--task", "meningioma", "--size", "8", "--no-cache"],
                                env={"COLUMNS": "200"})
    as_json = CliRunner().invoke(app, ["check", str(root), "--task", "meningioma", "--size", "8", "--no-cache",
                                       "--json"])

    assert result.exit_code == 0, result.output
    assert "Same-scan pairs" in result.output and "same scan (adjacent slices): mean |difference|" in result.output
    assert "Example same-scan pairs" in result.output and "scan2 (1).png" in result.output  # the closest pair
    assert "split groups: near-duplicates and same-scan slices joined" in result.output
    near = json.loads(as_json.stdout[as_json.stdout.index("{"):])["near_duplicates"]
    assert near["same_scan"]["groups"] == 4 and near["split_groups"]["images_in_groups"] == 12
