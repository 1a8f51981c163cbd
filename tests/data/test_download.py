"""Downloads against a local HTTP server: success, content checks, and clean failure (nothing left behind)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedsafe.cli import app as fedsafe_app
from fedsafe.cli.data import app
from fedsafe.data.download import (
    MEDMNIST_2D,
    MRI_COMMIT,
    DownloadError,
    check_npz,
    download,
    source_url,
)
from fedsafe.data.mri import list_mri_files

CLASSES = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
SUBSET = {"Training": dict.fromkeys(CLASSES, 3), "Testing": dict.fromkeys(CLASSES, 2)}
BREAST_SHA256 = "5e68d79723fb3a63a399b0a66b66451799fc2eb3651f469cec0b679cfd743b68"  # shared copy, its SOURCE.md


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def served(tmp_path):
    """(folder served, base URL) of an HTTP server on 127.0.0.1; always shut down."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _mri_zip(mri_root: Path, zip_path: Path, *, top: str = "Brain-Tumor-Classification-DataSet-master",
             corrupt: str | None = None) -> Path:
    """A GitHub-style archive of a small subset of the real files (3 Training, 2 Testing per class)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr(f"{top}/README.md", "subset for tests\n")
        for split, per_class in SUBSET.items():
            for cls, n in per_class.items():
                for path in sorted((mri_root / split / cls).iterdir())[:n]:
                    name = f"{top}/{split}/{cls}/{path.name}"
                    data = path.read_bytes()
                    zf.writestr(name, data[:200] if name == corrupt else data)
    return zip_path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_official_urls():
    assert source_url("brain-tumor-mri") == (
        "https://github.com/SartajBhuvaji/Brain-Tumor-Classification-DataSet/archive/refs/heads/master.zip")
    assert source_url("brain-tumor-mri", commit=MRI_COMMIT).endswith(f"/archive/{MRI_COMMIT}.zip")
    assert source_url("breastmnist") == "https://zenodo.org/records/10519652/files/breastmnist.npz?download=1"
    assert len(MEDMNIST_2D) == 12 and "organsmnist" in MEDMNIST_2D
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        source_url("imagenet")


@pytest.mark.realdata
def test_mri_download_extracts_and_checks(served, mri_root, tmp_path):
    folder, base = served
    _mri_zip(mri_root, folder / "refs" / "heads" / "master.zip")
    to = tmp_path / "data"

    result = download("brain-tumor-mri", to=to, base_url=base, expected_counts=SUBSET)

    assert result.path == to / "brain-tumor-mri"
    assert _leftovers(to) == ["brain-tumor-mri"]
    assert len(list_mri_files(result.path, "brain-tumor-4class")) == 20
    assert any("decode" in c for c in result.checks)
    record = json.loads((result.path / "download.json").read_text())
    assert record["sha256"] == hashlib.sha256((folder / "refs/heads/master.zip").read_bytes()).hexdigest()
    plain = to / "plain"
    plain.mkdir()  # the reference: a folder made in place, not mkdtemp's 0o700 staging folder renamed
    assert stat.S_IMODE(result.path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.realdata
def test_mri_download_of_the_pinned_commit(served, mri_root, tmp_path):
    folder, base = served
    _mri_zip(mri_root, folder / f"{MRI_COMMIT}.zip", top=f"Brain-Tumor-Classification-DataSet-{MRI_COMMIT}")

    result = download("brain-tumor-mri", to=tmp_path, base_url=base, commit=MRI_COMMIT, expected_counts=SUBSET)

    assert result.url.endswith(f"{MRI_COMMIT}.zip")
    assert (result.path / "Testing" / "no_tumor").is_dir()


@pytest.mark.realdata
def test_wrong_counts_fail_and_leave_nothing(served, mri_root, tmp_path):
    folder, base = served
    _mri_zip(mri_root, folder / "refs" / "heads" / "master.zip")
    to = tmp_path / "data"

    with pytest.raises(DownloadError, match="file counts differ"):
        download("brain-tumor-mri", to=to, base_url=base)  # the published counts (2870 / 394)

    assert _leftovers(to) == []


@pytest.mark.realdata
def test_a_file_that_does_not_decode_fails(served, mri_root, tmp_path):
    folder, base = served
    first = sorted((mri_root / "Testing" / "no_tumor").iterdir())[0].name
    bad = f"Brain-Tumor-Classification-DataSet-master/Testing/no_tumor/{first}"
    _mri_zip(mri_root, folder / "refs" / "heads" / "master.zip", corrupt=bad)

    with pytest.raises(DownloadError, match="does not decode"):
        download("brain-tumor-mri", to=tmp_path / "data", base_url=base, expected_counts=SUBSET)

    assert _leftovers(tmp_path / "data") == []


def test_corrupted_zip_fails_and_leaves_nothing(served, tmp_path):
    folder, base = served
    (folder / "refs" / "heads").mkdir(parents=True)
    (folder / "refs" / "heads" / "master.zip").write_bytes(b"PK\x03\x04 this is not really a zip" * 10)

    with pytest.raises(DownloadError, match="not a valid zip"):
        download("brain-tumor-mri", to=tmp_path / "data", base_url=base, expected_counts=SUBSET)

    assert _leftovers(tmp_path / "data") == []


def test_http_error_fails_cleanly(served, tmp_path):
    _, base = served

    with pytest.raises(DownloadError, match="404"):
        download("breastmnist", to=tmp_path / "data", base_url=base)

    assert _leftovers(tmp_path / "data") == []


@pytest.mark.realdata
def test_npz_download_with_a_mirror(served, breastmnist_npz, tmp_path):
    folder, base = served
    shutil.copy(breastmnist_npz, folder / "breastmnist.npz")

    result = download("breastmnist", to=tmp_path, base_url=base, expected_sha256=BREAST_SHA256)

    assert result.path == tmp_path / "breastmnist.npz" and result.sha256 == BREAST_SHA256
    (tmp_path / "plain").write_text("x")  # the reference: a file opened in place, not mkstemp's 0o600
    assert stat.S_IMODE(result.path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert result.path.read_bytes() == breastmnist_npz.read_bytes()
    assert "sha256 matches" in result.checks
    assert json.loads((tmp_path / "breastmnist.npz.download.json").read_text())["sha256"] == BREAST_SHA256
    with pytest.raises(DownloadError, match="already exists"):
        download("breastmnist", to=tmp_path, base_url=base)


@pytest.mark.realdata
def test_npz_sha_mismatch_fails(served, breastmnist_npz, tmp_path):
    folder, base = served
    shutil.copy(breastmnist_npz, folder / "breastmnist.npz")

    with pytest.raises(DownloadError, match="sha256"):
        download("breastmnist", to=tmp_path / "d", base_url=base, expected_sha256="0" * 64)

    assert _leftovers(tmp_path / "d") == []


def test_npz_structure_is_checked(served, tmp_path):
    folder, base = served
    np.savez(folder / "pneumoniamnist.npz", train_images=np.zeros((2, 28, 28), np.uint8),
             train_labels=np.zeros(2, np.uint8))

    with pytest.raises(DownloadError, match="missing key 'val_images'"):
        download("pneumoniamnist", to=tmp_path / "d", base_url=base)

    assert _leftovers(tmp_path / "d") == []


def test_check_npz_accepts_multi_label_sets(tmp_path):
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros((3, 28, 28), np.uint8)
        arrays[f"{split}_labels"] = np.zeros((3, 14), np.uint8)
    np.savez(tmp_path / "chestmnist.npz", **arrays)

    assert check_npz(tmp_path / "chestmnist.npz")


def test_base_url_from_the_environment(served, tmp_path, monkeypatch):
    folder, base = served
    monkeypatch.setenv("FEDSAFE_DOWNLOAD_BASE", base)

    assert source_url("octmnist") == f"{base}/octmnist.npz?download=1"


# --- fedsafe data download -------------------------------------------------------------------------------


@pytest.mark.realdata
def test_cli_download_ok_and_failure(served, breastmnist_npz, tmp_path):
    folder, base = served
    shutil.copy(breastmnist_npz, folder / "breastmnist.npz")
    runner = CliRunner()

    ok = runner.invoke(app, ["download", "breastmnist", "-o", str(tmp_path / "d"), "--base-url", base])
    missing = runner.invoke(app, ["download", "dermamnist", "--to", str(tmp_path / "d"), "--base-url", base])
    unknown = runner.invoke(app, ["download", "imagenet", "--to", str(tmp_path / "d")])

    assert ok.exit_code == 0, ok.output
    assert BREAST_SHA256 in ok.output
    assert missing.exit_code == 1 and "dermamnist.npz" in missing.output
    assert unknown.exit_code == 1 and "unknown data set 'imagenet'" in unknown.output
    assert _leftovers(tmp_path / "d") == ["breastmnist.npz", "breastmnist.npz.download.json"]


# --- a file as --to, and an HTML page served as an npz ------------------------------------------------


def test_to_an_existing_file_is_a_one_line_error(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("not a folder")

    with pytest.raises(ValueError, match="is a file, not a folder"):
        download("breastmnist", to=target, base_url="http://127.0.0.1:9")
    result = CliRunner().invoke(fedsafe_app, ["data", "download", "breastmnist", "-o", str(target)],
                                env={"COLUMNS": "300"})

    assert result.exit_code == 2  # the command line names a file where a folder goes: a usage error
    assert str(target) in result.output and "is a file" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert target.read_text() == "not a folder"


def test_an_html_page_served_as_npz_is_named_as_such(served, tmp_path):
    folder, base = served
    (folder / "breastmnist.npz").write_bytes(
        b"<!DOCTYPE html>\n<html><head><title>Log in</title></head><body>Sign in to continue</body></html>\n")

    with pytest.raises(DownloadError) as info:
        download("breastmnist", to=tmp_path / "d", base_url=base)
    result = CliRunner().invoke(app, ["download", "breastmnist", "--to", str(tmp_path / "e"), "--base-url", base])

    for message in (str(info.value), result.output):
        assert "HTML page, not an npz archive" in " ".join(message.split())
        assert "pickle" not in message
    assert result.exit_code == 1
    assert _leftovers(tmp_path / "d") == [] and _leftovers(tmp_path / "e") == []


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "empty"), (b"\x93NUMPY\x01\x00 rest", "single .npy array"), (b"\x1f\x8b\x08 gz", "gzip"),
    (b'{"error": "not found"}', "not an npz (zip) archive"),
])
def test_other_non_npz_files_are_described(tmp_path, content, expected):
    path = tmp_path / "x.npz"
    path.write_bytes(content)

    with pytest.raises(DownloadError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check_npz(path, "x.npz")


def test_an_npz_with_pickled_objects_is_refused_without_suggesting_pickles(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, train_images=np.array([{"a": 1}], dtype=object), train_labels=np.zeros(1, np.uint8))

    with pytest.raises(DownloadError) as info:
        check_npz(path, "objects.npz")

    assert "pickled Python objects" in str(info.value) and "allow_pickle" not in str(info.value)
