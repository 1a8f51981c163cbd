"""A run is bound to its data (design §12): the data it trained on is fingerprinted, and a resume, an attack or an
audit on other data is refused, saying what changed; a resume never overwrites the run's record of its data."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fedsafe.build import data_fingerprint, prepare_data
from fedsafe.cli import app
from fedsafe.config import load_config
from fedsafe.runs.errors import RunDataChanged
from fedsafe.runs.fingerprint import data_changes, fingerprint, image_digest
from fedsafe.training.trainer import train

SYN = ["task.image_size=16", "task.synthetic_size=300", "model.width=0.04", "splits.client_test_size=20",
       "train.local_epochs=1", "train.rounds=3", "train.precision=fp32", "federation.downlink_noise=0.01",
       "threads=1"]
MRI = ["task.name=meningioma", "task.image_size=16", "model.width=0.04", "splits.client_test_size=10",
       "train.local_epochs=1", "train.rounds=2", "train.precision=fp32", "federation.downlink_noise=0.01",
       "threads=1"]
RECORD = ("data_fingerprint.json", "splits.json", "data_report.json", "config.yaml", "checkpoint.pt", "metrics.json")


def _flat(text: str) -> str:
    return " ".join(text.split())


def _has(output: str, text: str) -> bool:
    """``text`` in the CLI's ``output``, whatever the console's line breaks (it breaks long paths anywhere)."""
    return "".join(text.split()) in "".join(output.split())


def _mri_folder(root, *, seed=0, per_class=100):
    """A meningioma tree (Kaggle layout) of distinct random 16x16 grey PNGs, the class in the brightness."""
    rng = np.random.default_rng(seed)
    for label, cls in enumerate(("no_tumor", "meningioma_tumor")):
        for i in range(per_class):
            split = "Training" if i % 4 else "Testing"
            d = root / "brain-tumor-mri" / split / cls
            d.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 128, (16, 16)) + 100 * label
            Image.fromarray(pixels.astype(np.uint8), mode="L").save(d / f"img ({i}).png")
    return root


def _change_images(root, n):
    files = sorted((root / "brain-tumor-mri" / "Training" / "no_tumor").glob("*.png"))[:n]
    for f in files:
        img = np.asarray(Image.open(f)).copy()
        img[0, 0] ^= 0xFF
        Image.fromarray(img, mode="L").save(f)


def _record(run):
    return {n: (run / n).read_bytes() for n in RECORD}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSAFE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_a_resume_on_changed_data_is_refused(tmp_path):
    cfg = load_config(overrides=SYN)
    a = prepare_data(cfg)
    b = prepare_data(load_config(overrides=[*SYN, "seed=1"]))  # other pictures, the same ids and sizes
    run = tmp_path / "run"
    train(cfg, run, stop_after=1, data=a)
    before = _record(run)
    with pytest.raises(RunDataChanged, match=r"data changed since round 1: \d+ image\(s\) differ; refusing to "
                                             r"resume the run on other data \(its record: .*data_fingerprint.json\)"):
        train(cfg, run, data=b)
    assert _record(run) == before and not (run / "models" / "global" / "round_0002.pt").exists()
    out = train(cfg, run, data=a)  # its own data resumes
    assert out.result.resumed_from == 1 and (run / "summary.json").is_file()


def test_a_resume_on_a_changed_data_folder_names_the_count_and_the_roots(env):
    a, b = _mri_folder(env / "A"), env / "B"
    shutil.copytree(a, b)
    _change_images(b, 3)
    run = env / "run"
    base = ["train", "--run-dir", str(run), "--stop-after", "1"]
    r = CliRunner().invoke(app, [*base, *sum([["--set", o] for o in MRI], [])], env={"FEDSAFE_DATA": str(a)})
    assert r.exit_code == 0, r.output
    before = _record(run)
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), *sum([["--set", o] for o in MRI], [])],
                           env={"FEDSAFE_DATA": str(b)})
    msg = _flat(r.output)
    assert r.exit_code == 1 and r.output.count("error:") == 1, r.output
    want = (f"data changed since round 1: 3 image(s) differ (root {(a / 'brain-tumor-mri').resolve()} -> "
            f"{(b / 'brain-tumor-mri').resolve()})")
    assert _has(msg, want), msg
    assert _record(run) == before


def test_an_attack_and_an_audit_on_changed_data_are_refused(env):
    a, b, c = _mri_folder(env / "A"), env / "B", env / "C"
    shutil.copytree(a, b)
    shutil.copytree(a, c)
    _change_images(b, 2)
    (c / "brain-tumor-mri" / "Testing" / "no_tumor" / "img (0).png").unlink()
    run = env / "run"
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), *sum([["--set", o] for o in MRI], [])],
                           env={"FEDSAFE_DATA": str(a)})
    assert r.exit_code == 0, r.output
    before = _record(run)
    for cmd in (["attack", str(run), "--no-sanity", "--steps", "1"], ["audit", str(run), "--dry-run"]):
        r = CliRunner().invoke(app, cmd, env={"FEDSAFE_DATA": str(b)})
        assert r.exit_code == 1 and r.output.count("error:") == 1, r.output
        assert "data changed since the run was trained: 2 image(s) differ (root" in _flat(r.output)
        assert "refusing to attack or audit the run on other data" in _flat(r.output)
    r = CliRunner().invoke(app, ["attack", str(run), "--no-sanity", "--steps", "1"], env={"FEDSAFE_DATA": str(c)})
    assert r.exit_code == 1 and "1 of its 200 images are missing or changed, 0 are new" in _flat(r.output)
    assert _record(run) == before and not (run / "attacks").exists()
    # the same pictures under another root are the same data
    moved = env / "moved"
    shutil.copytree(a, moved)
    r = CliRunner().invoke(app, ["attack", str(run), "--no-sanity", "--steps", "1"], env={"FEDSAFE_DATA": str(moved)})
    assert r.exit_code == 0, r.output


def test_a_resume_does_not_rewrite_the_record_of_the_data(tmp_path):
    cfg = load_config(overrides=SYN)
    run = tmp_path / "run"
    train(cfg, run, stop_after=1)
    inodes = {n: (run / n).stat().st_ino for n in ("splits.json", "data_report.json", "data_fingerprint.json")}
    train(cfg, run)
    assert {n: (run / n).stat().st_ino for n in inodes} == inodes  # not replaced by a write


def test_a_run_without_a_fingerprint_is_checked_against_its_splits(env):
    a, b = _mri_folder(env / "A"), env / "B"
    shutil.copytree(a, b)
    _change_images(b, 1)
    run = env / "run"
    args = ["train", "--run-dir", str(run), *sum([["--set", o] for o in MRI], [])]
    assert CliRunner().invoke(app, [*args, "--stop-after", "1"], env={"FEDSAFE_DATA": str(a)}).exit_code == 0
    (run / "data_fingerprint.json").unlink()  # as a run written before fingerprints
    r = CliRunner().invoke(app, args, env={"FEDSAFE_DATA": str(b)})
    assert r.exit_code == 1 and "image ids of its sets differ from the run's" in _flat(r.output)
    assert "splits.json" in _flat(r.output) and not (run / "data_fingerprint.json").exists()
    r = CliRunner().invoke(app, args, env={"FEDSAFE_DATA": str(a)})
    assert r.exit_code == 0, r.output
    assert json.loads((run / "data_fingerprint.json").read_text())["images"] == 200  # recorded now


def test_the_fingerprint_is_the_sorted_digests_of_ids_labels_and_pixels():
    cfg = load_config(overrides=SYN)
    data = prepare_data(cfg)
    fp = data_fingerprint(data)
    sets = [data.global_test, data.server, *data.client_test, *data.client_train]
    assert fp["images"] == sum(len(s) for s in sets) and fp["root"] is None and fp["synthetic"] is True
    # an independent digest of one image: sha256(id NUL label NUL uint8 pixels)[:16]
    s = data.server
    px = np.rint(s.x[0].numpy() * 255).astype(np.uint8).tobytes()
    mine = hashlib.sha256(f"{s.ids[0]}\0{int(s.y[0])}\0".encode() + px).hexdigest()[:16]
    assert mine in fp["entries"] and mine == image_digest(s.ids[0], int(s.y[0]), px)
    assert fp["entries"] == sorted(fp["entries"])


def test_data_changes_says_what_changed():
    def fp(entries, root="/x", size=16):
        return fingerprint(root=root, source=root, synthetic=False, preprocessing={"size": size},
                           images=[(e, 0, b"") for e in entries])

    old = fp(["a", "b", "c", "d"])
    assert data_changes(old, fp(["d", "c", "b", "a"], root="/y")) is None  # moved, same pictures
    assert data_changes(old, fp(["a", "b", "x", "y"], root="/y")) == "2 image(s) differ (root /x -> /y)"
    assert data_changes(old, fp(["a", "b", "c"])) == "1 of its 4 images are missing or changed, 0 are new"
    assert data_changes(old, fp(["a", "b", "c", "d"], size=32)) == "preprocessing size 16 -> 32"
