"""The image-folder task (data/folder.py) and per-site splits (data/sites.py): the user's own images, classes
from the folders, the MRI reader's de-duplication and unreadable-file report, and a sites CSV that partitions the
federation by hospital and keeps each patient's images in one set."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fedsafe.build import prepare_data
from fedsafe.cli import app
from fedsafe.config import ConfigError, load_config
from fedsafe.data.folder import folder_classes, read_sites_csv
from fedsafe.data.sites import share_out, site_splits
from fedsafe.data.tasks import load_task, task_class_names

CLASSES = ("benign", "malignant")  # a-z, as the folders give them


def _png(path: Path, rng: np.random.Generator, *, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (12, 12, 3) if rgb else (12, 12)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def make_folder(root: Path, *, per_site: dict[str, int], seed: int = 0) -> tuple[Path, dict[str, tuple[str, str]]]:
    """train/ and test/ over two class folders; ``per_site`` images per class per site, 2 images a patient, the
    first image of each class in test/ and RGB; returns the root and file -> (site, patient)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, tuple[str, str]] = {}
    for cls in CLASSES:
        k = 0
        for site, n in per_site.items():
            for i in range(n):
                split = "test" if k % 5 == 0 else "train"
                rel = f"{split}/{cls}/{site}-{i:03d}.png"
                _png(root / rel, rng, rgb=k == 0)
                rows[rel] = (site, f"{cls[0]}{i // 2}")
                k += 1
    return root, rows


def write_csv(root: Path, rows: dict[str, tuple[str, str]], name: str = "sites.csv") -> Path:
    lines = ["file,site,patient", *(f"{f},{s},{p}" for f, (s, p) in rows.items())]
    (root / name).write_text("\n".join(lines) + "\n")
    return root / name


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_classes_come_from_the_folders_and_train_test_are_pooled(tmp_path):
    root, rows = make_folder(tmp_path / "imgs", per_site={"A": 6})
    shutil.copy(root / "train/benign/A-001.png", root / "test/benign/copy.png")  # a byte-identical duplicate
    (root / "train/malignant/broken.png").write_text("<html>not a picture</html>")
    (root / "train/malignant/notes.txt").write_text("ignored: not an image extension")

    table, report = load_task("image-folder", data_root=root, image_size=8, channels=3, use_cache=False)

    assert table.class_names == CLASSES == folder_classes(root) == task_class_names("image-folder", root)
    assert len(table) == 12 and table.images.shape == (12, 8, 8, 3)
    assert report.duplicates["removed"] == 1 and report.counts["test"]["benign"] == 3
    assert [u["file"] for u in report.unreadable] == [str(root / "train/malignant/broken.png")]
    kept = {sha(root / f): f for f in rows}
    assert set(table.ids) == set(kept)
    for i, sid in enumerate(table.ids):  # label = the folder's index a-z, origin = its split folder
        split, cls, _ = kept[sid].split("/")
        assert table.labels[i] == CLASSES.index(cls) and table.origin[i] == split
    assert table.sites is None


def test_a_fifo_or_a_link_to_a_device_named_like_an_image_is_named_as_unreadable(tmp_path):
    root, _ = make_folder(tmp_path / "imgs", per_site={"A": 6})
    fifo = root / "test/malignant/pipe.png"
    os.mkfifo(fifo)  # opening it would block for ever: it must be named without being read
    device = root / "train/benign/deep/device.jpg"  # in a sub-folder of the class: still the class's
    device.parent.mkdir()
    device.symlink_to(os.devnull)
    broken = root / "train/benign/gone.png"
    broken.symlink_to(root / "nowhere.png")
    (root / "train/benign/folder.png").mkdir()  # a folder named like an image is a sub-folder, not an entry

    table, report = load_task("image-folder", data_root=root, image_size=8, channels=1, use_cache=False)

    assert {u["file"]: u["error"] for u in report.unreadable} == {
        str(fifo): "not a regular file: a FIFO",
        str(device): "not a regular file: a symbolic link to a character device",
        str(broken): "not a regular file: a broken symbolic link"}
    assert report.counts["test"]["malignant"] == 3 and report.counts["train"]["benign"] == 4 + 2  # counted
    assert len(table) == 12 and any("3 not a regular file" in n for n in report.notes)


def test_a_flat_folder_is_one_pool(tmp_path):
    rng = np.random.default_rng(1)
    for cls in ("z-cls", "a-cls", "m-cls"):
        for i in range(3):
            _png(tmp_path / cls / "sub" / f"{i}.tif", rng)
    table, _ = load_task("image-folder", data_root=tmp_path, image_size=8, channels=1, use_cache=False)
    assert table.class_names == ("a-cls", "m-cls", "z-cls") and set(table.origin) == {"folder"}
    assert np.bincount(table.labels).tolist() == [3, 3, 3]


@pytest.mark.parametrize("layout", [["only"], ["train/only", "test/only"], []])
def test_fewer_than_two_class_folders_is_a_one_line_error(tmp_path, layout):
    for d in layout:
        _png(tmp_path / d / "x.png", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"needs one sub-folder per class, at least two") as e:
        load_task("image-folder", data_root=tmp_path, image_size=8, channels=1, use_cache=False)
    assert "\n" not in str(e.value)
    r = CliRunner().invoke(app, ["train", "--task", "image-folder", "--data-root", str(tmp_path),
                                 "--run-dir", str(tmp_path / "run")])
    assert r.exit_code != 0 and "at least two" in " ".join(r.output.split()) and not (tmp_path / "run").exists()


def test_two_hospitals_csv_partitions_the_federation_by_site_and_keeps_patients_together(tmp_path):
    root, rows = make_folder(tmp_path / "imgs", per_site={"hospital-A": 40, "hospital-B": 24})
    write_csv(root, rows)
    cfg = load_config(overrides=[
        "task.name=image-folder", f"task.data_root={root}", "task.sites_csv=sites.csv", "task.image_size=8",
        f"task.cache_dir={tmp_path / 'cache'}", "splits.partition=sites", "splits.num_clients=2",
        "splits.client_test_size=10", "splits.server_size=0.1", "splits.global_test_size=0.1", "train.device=cpu"])

    data = prepare_data(cfg)

    site_of = {sha(root / f): s for f, (s, _) in rows.items()}
    patient_of = {sha(root / f): (s, p) for f, (s, p) in rows.items()}
    assert {site_of[i] for i in data.client_train[0].ids + data.client_test[0].ids} == {"hospital-A"}
    assert {site_of[i] for i in data.client_train[1].ids + data.client_test[1].ids} == {"hospital-B"}
    assert {site_of[i] for i in data.global_test.ids} == {site_of[i] for i in data.server.ids} == {
        "hospital-A", "hospital-B"}
    assert [len(s) for s in data.client_test] == [10, 10]
    assert len(data.client_train[0]) + len(data.client_test[0]) + sum(
        site_of[i] == "hospital-A" for i in data.global_test.ids + data.server.ids) == 80
    sets = {"global": data.global_test.ids, "server": data.server.ids,
            **{f"test{i}": s.ids for i, s in enumerate(data.client_test)},
            **{f"train{i}": s.ids for i, s in enumerate(data.client_train)}}
    holder: dict[tuple[str, str], set[str]] = {}
    for name, ids in sets.items():
        for i in ids:
            holder.setdefault(patient_of[i], set()).add(name)
    assert len(holder) == 2 * (20 + 12) and all(len(v) == 1 for v in holder.values())  # no patient straddles
    assert any("2 site(s)" in n for n in data.report.notes)


def test_sites_errors_are_one_line(tmp_path):
    root, rows = make_folder(tmp_path / "imgs", per_site={"A": 5, "B": 5})
    some = dict(list(rows.items())[1:])
    write_csv(root, some)

    def error(**kw):
        with pytest.raises(ValueError) as e:
            load_task("image-folder", data_root=root, image_size=8, channels=1, use_cache=False, **kw)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "1 image(s) have no row, e.g. 'test/benign/A-000.png'" in error(sites_csv="sites.csv")
    write_csv(root, {**rows, "train/benign/gone.png": ("A", "x")})
    assert "1 row(s) name files that are not images" in error(sites_csv="sites.csv")
    (root / "bad.csv").write_text("path,hospital\na.png,A\n")
    assert "no 'file' column" in error(sites_csv="bad.csv")
    assert "sites CSV not found" in error(sites_csv="nowhere.csv")
    (root / "twice.csv").write_text("file,site\na.png,A\na.png,B\n")
    with pytest.raises(ValueError, match=r"twice.csv, line 3: 'a.png' is named twice"):
        read_sites_csv(root / "twice.csv")
    with pytest.raises(ValueError, match="applies to the image-folder task"):
        load_task("synthetic", image_size=8, channels=1, sites_csv="x.csv")
    with pytest.raises(ConfigError, match="splits.partition=sites needs task.sites_csv"):
        load_config(overrides=["splits.partition=sites", "splits.num_clients=2"])
    write_csv(root, rows)
    with pytest.raises(ValueError, match=r"names 2 site\(s\) \(A, B\), so set splits.num_clients=2 \(got 3\)"):
        prepare_data(load_config(overrides=[
            "task.name=image-folder", f"task.data_root={root}", "task.sites_csv=sites.csv", "task.image_size=8",
            "splits.partition=sites", "splits.num_clients=3", "train.device=cpu",
            f"task.cache_dir={tmp_path / 'cache'}"]))


def test_site_splits_equal_per_site_splits_and_share_counts_by_size():
    labels = np.tile([0, 1, 1], 60)
    sites = ["B"] * 100 + ["A"] * 80
    s = site_splits(labels, sites, num_clients=2, client_test_size=8, server_size=18, global_test_size=0.1,
                    rng=np.random.default_rng(0))
    s.check_disjoint()
    assert len(s.all_indices()) == 180 and len(s.server) == 18 and len(s.global_test) == 8 + 10
    a, b = np.arange(100, 180), np.arange(100)  # client 0 = site A (a-z)
    assert np.isin(s.client_train[0], a).all() and np.isin(s.client_test[1], b).all()
    assert np.isin(s.server, a).sum() == 8 and np.isin(s.server, b).sum() == 10  # 18 shared 80:100
    assert share_out(7, [1, 2, 4]) == [1, 2, 4] and sum(share_out(10, [3, 3, 3])) == 10


def test_data_check_reads_an_image_folder(tmp_path):
    root, _ = make_folder(tmp_path / "imgs", per_site={"A": 4})
    r = CliRunner().invoke(app, ["data", "check", str(root), "--task", "image-folder", "--size", "8",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "benign" in text and "malignant" in text and "train and test pooled" in text
