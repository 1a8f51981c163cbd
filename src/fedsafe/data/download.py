"""Download the public data sets, check their content, and only then put them in place.

Sources (``SOURCES``):

* ``brain-tumor-mri``: the GitHub archive of SartajBhuvaji/Brain-Tumor-Classification-DataSet
  (``.../archive/refs/heads/master.zip``, or ``.../archive/<commit>.zip`` for the pinned commit
  ``MRI_COMMIT``), extracted to ``<to>/brain-tumor-mri/{Training,Testing}/<class>/``. Check: the file
  counts per split and class equal ``MRI_EXPECTED_COUNTS`` (the table of its SOURCE.md: 2870 / 394), and
  every file decodes.
* the 2D MedMNIST sets (``MEDMNIST_2D``): ``https://zenodo.org/records/10519652/files/<name>.npz`` to
  ``<to>/<name>.npz``. Check: the six keys load with consistent shapes; from the official URL the MD5
  that the medmnist package records must match; ``expected_sha256`` is compared when given. (A
  re-saved copy, like the shared BreastMNIST with 1-D labels, has another checksum but the same arrays,
  so a mirror gets the structural check plus an optional sha256.)

The base URL can be replaced (``base_url=`` / ``--base-url`` / ``$FEDSAFE_DOWNLOAD_BASE``): the file's
path is then appended to it (``<base>/refs/heads/master.zip``, ``<base>/<name>.npz?download=1``).
Downloads go to a temporary file in the target folder; extraction goes to a temporary folder; both are
renamed into place only after the check passes, and removed when anything fails (``DownloadError``).
Only the standard library (urllib) is used. A ``download.json`` record (URL, sha256, MD5) is written
beside the data.

Example::

    result = download("breastmnist", to=Path("data"))     # result.path == data/breastmnist.npz
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ..progress import Progress, report
from ..runs.atomic import new_file_mode, temp_file
from .decode import DECODE_ERRORS
from .medmnist import not_npz_reason, npz_load_error
from .mri import IMAGE_SUFFIXES

__all__ = [
    "DownloadError", "DownloadResult", "MRI_ARCHIVE_BASE", "MRI_COMMIT", "MRI_EXPECTED_COUNTS", "MEDMNIST_BASE",
    "MEDMNIST_2D", "MEDMNIST_MD5", "SOURCES", "source_url", "fetch", "extract_mri_zip", "check_mri_tree",
    "check_npz", "download",
]

log = logging.getLogger(__name__)

MRI_ARCHIVE_BASE = "https://github.com/SartajBhuvaji/Brain-Tumor-Classification-DataSet/archive"
MRI_COMMIT = "3ea9f4eae54c67e5bddbf6f7a73582967a5f5f79"
MRI_EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "Training": {"glioma_tumor": 826, "meningioma_tumor": 822, "no_tumor": 395, "pituitary_tumor": 827},
    "Testing": {"glioma_tumor": 100, "meningioma_tumor": 115, "no_tumor": 105, "pituitary_tumor": 74},
}
"""Files per split and class of the published data set (its SOURCE.md): 2870 Training, 394 Testing."""

MEDMNIST_BASE = "https://zenodo.org/records/10519652/files"
MEDMNIST_MD5: dict[str, str] = {
    "pathmnist": "a8b06965200029087d5bd730944a56c1",
    "chestmnist": "02c8a6516a18b556561a56cbdd36c4a8",
    "dermamnist": "0744692d530f8e62ec473284d019b0c7",
    "octmnist": "c68d92d5b585d8d81f7112f81e2d0842",
    "pneumoniamnist": "28209eda62fecd6e6a2d98b1501bb15f",
    "retinamnist": "bd4c0672f1bba3e3a89f0e4e876791e4",
    "breastmnist": "750601b1f35ba3300ea97c75c52ff8f6",
    "bloodmnist": "7053d0359d879ad8a5505303e11de1dc",
    "tissuemnist": "ebe78ee8b05294063de985d821c1c34b",
    "organamnist": "68e3f8846a6bd62f0c9bf841c0d9eacc",
    "organcmnist": "b9ceb9546e10131b32923c5bbeaea2b1",
    "organsmnist": "9ab87b696fb54e2a387ebe992d6ed5f1",
}
"""MD5 of the 28x28 files of Zenodo record 10519652, as the medmnist package (v3) records them."""
MEDMNIST_2D: tuple[str, ...] = tuple(MEDMNIST_MD5)
SOURCES: tuple[str, ...] = ("brain-tumor-mri", *MEDMNIST_2D)
_NPZ_SPLITS = ("train", "val", "test")
_BLOCK = 1 << 20


class DownloadError(RuntimeError):
    """A download, extraction or content check failed; nothing was left in place."""


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download` put where: the data path, the URL, and the downloaded file's checksums."""

    name: str
    path: Path
    url: str
    sha256: str
    md5: str
    checks: list[str] = field(default_factory=list)


def _base(base_url: str | None, default: str) -> tuple[str, bool]:
    """(base URL without trailing slash, whether it is the official one)."""
    base = base_url or os.environ.get("FEDSAFE_DOWNLOAD_BASE") or default
    return base.rstrip("/"), base.rstrip("/") == default


def source_url(name: str, *, base_url: str | None = None, commit: str | None = None) -> str:
    """The URL of source ``name`` (``commit`` picks a pinned MRI archive). Raises ValueError for unknown names."""
    if name == "brain-tumor-mri":
        base, _ = _base(base_url, MRI_ARCHIVE_BASE)
        return f"{base}/{commit}.zip" if commit else f"{base}/refs/heads/master.zip"
    if name in MEDMNIST_MD5:
        if commit:
            raise ValueError("commit applies to brain-tumor-mri only")
        base, _ = _base(base_url, MEDMNIST_BASE)
        return f"{base}/{name}.npz?download=1"
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(SOURCES)}")


def fetch(url: str, folder: Path, *, progress: Progress | None = None, timeout: float = 60.0,
          step: str = "downloading") -> tuple[Path, str, str]:
    """Stream ``url`` to a new temporary file in ``folder``. Returns (temporary path, sha256, md5).

    The caller renames the file into place after checking it. Raises DownloadError (and removes the
    partial file) on any network or HTTP error.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = temp_file(folder, ".download-", ".part")
    tmp = Path(tmp_name)
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "fedsafe"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while block := response.read(_BLOCK):
                out.write(block)
                sha.update(block)
                md5.update(block)
                done += len(block)
                report(progress, step, done, max(total, done))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"cannot download {url}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("downloaded %s (%d bytes, sha256 %s)", url, done, sha.hexdigest())
    return tmp, sha.hexdigest(), md5.hexdigest()


def extract_mri_zip(archive: Path, dest: Path) -> int:
    """Extract ``<top>/Training/**`` and ``<top>/Testing/**`` of a GitHub archive into ``dest``.

    Returns the number of files written. Raises DownloadError for a bad zip, no Training/Testing
    folders, or member paths that would leave ``dest``.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            picked: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
            for m in members:
                parts = PurePosixPath(m.filename).parts
                if m.filename.startswith("/") or ".." in parts:
                    raise DownloadError(f"{archive}: unsafe path in archive: {m.filename!r}")
                split_at = [i for i, p in enumerate(parts) if p in ("Training", "Testing")]
                if split_at:
                    picked.append((m, PurePosixPath(*parts[split_at[0]:])))
            if not picked:
                raise DownloadError(f"{archive}: no Training/ or Testing/ folder in the archive")
            for m, rel in picked:
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _BLOCK)
            return len(picked)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DownloadError(f"{archive}: not a valid zip archive ({exc})") from exc


def _verify_image(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def check_mri_tree(root: Path, expected_counts: Mapping[str, Mapping[str, int]] = MRI_EXPECTED_COUNTS, *,
                   progress: Progress | None = None) -> list[str]:
    """Check an extracted MRI tree: file counts per split and class, then every file decodes.

    Returns the checks passed (for the record). Raises DownloadError naming the first difference.
    """
    actual: dict[str, dict[str, int]] = {}
    files: list[Path] = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            found = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            actual.setdefault(split_dir.name, {})[class_dir.name] = len(found)
            files.extend(found)
    expected = {s: dict(c) for s, c in expected_counts.items()}
    if actual != expected:
        raise DownloadError(f"file counts differ from the published ones: expected {expected}, found {actual}")
    for i, path in enumerate(files):
        try:
            _verify_image(path)
        except DECODE_ERRORS as exc:
            raise DownloadError(f"{path.relative_to(root)} does not decode: {type(exc).__name__}: {exc}") from exc
        if (i + 1) % 64 == 0 or i + 1 == len(files):
            report(progress, "checking images", i + 1, len(files))
    total = sum(sum(c.values()) for c in actual.values())
    return [f"file counts per split and class match ({total} files)", f"all {len(files)} files decode"]


def check_npz(path: Path, name: str = "npz") -> list[str]:
    """Structural check of a MedMNIST npz: the six keys, uint8 images (N,H,W[,3]), labels (N,) or (N,K).

    Returns the checks passed. Raises DownloadError naming the key at fault.
    """
    try:
        reason = not_npz_reason(path)
    except OSError as exc:
        raise DownloadError(f"{name}: cannot read the downloaded file ({exc})") from exc
    if reason is not None:
        raise DownloadError(f"{name}: {reason}")
    try:
        with np.load(path, allow_pickle=False) as data:
            shapes = []
            for split in _NPZ_SPLITS:
                for key in (f"{split}_images", f"{split}_labels"):
                    if key not in data.files:
                        raise DownloadError(f"{name}: missing key {key!r} (has {', '.join(sorted(data.files))})")
                images, labels = data[f"{split}_images"], data[f"{split}_labels"]
                if images.dtype != np.uint8 or images.ndim not in (3, 4) or (
                        images.ndim == 4 and images.shape[-1] not in (1, 3)):
                    raise DownloadError(f"{name}: key '{split}_images' has shape {images.shape} {images.dtype}, "
                                        "expected (N,H,W) or (N,H,W,3) uint8")
                if labels.ndim not in (1, 2) or len(labels) != len(images):
                    raise DownloadError(f"{name}: key '{split}_labels' has shape {labels.shape}, expected "
                                        f"({len(images)},) or ({len(images)}, K)")
                shapes.append(f"{split} {len(images)}")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DownloadError(f"{name}: {npz_load_error(path, exc)}") from exc
    return [f"keys and shapes load ({', '.join(shapes)})"]


def download(
    name: str, *, to: Path | str, base_url: str | None = None, commit: str | None = None,
    expected_counts: Mapping[str, Mapping[str, int]] | None = None, expected_sha256: str | None = None,
    force: bool = False, progress: Progress | None = None, timeout: float = 60.0,
) -> DownloadResult:
    """Download source ``name`` into folder ``to``, check it, and put it in place.

    Returns a DownloadResult. Raises ValueError for an unknown name or a ``to`` that is a file (or cannot be
    made a folder), DownloadError when the target exists (unless ``force``), the download fails, or a check
    fails (the partial download is removed).
    """
    url = source_url(name, base_url=base_url, commit=commit)
    to = Path(to).expanduser()
    if to.exists() and not to.is_dir():
        raise ValueError(f"{to} is a file, not a folder: the download target (-o/--output) must be a folder to put the "
                         "data in")
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot make the folder {to} for the download: {exc.strerror or exc}") from exc
    if name == "brain-tumor-mri":
        return _download_mri(url, to, expected_counts or MRI_EXPECTED_COUNTS, expected_sha256, force, progress,
                             timeout)
    official = _base(base_url, MEDMNIST_BASE)[1]
    return _download_npz(name, url, to, official, expected_sha256, force, progress, timeout)


def _check_sha(sha: str, expected_sha256: str | None, url: str) -> list[str]:
    if expected_sha256 is None:
        return []
    if sha != expected_sha256.lower():
        raise DownloadError(f"sha256 of {url} is {sha}, expected {expected_sha256}")
    return ["sha256 matches"]


def _write_record(path: Path, result: DownloadResult) -> None:
    record = {"name": result.name, "url": result.url, "sha256": result.sha256, "md5": result.md5,
              "checks": result.checks}
    path.write_text(json.dumps(record, indent=2) + "\n")


def _download_mri(url: str, to: Path, expected_counts: Mapping[str, Mapping[str, int]],
                  expected_sha256: str | None, force: bool, progress: Progress | None,
                  timeout: float) -> DownloadResult:
    dest = to / "brain-tumor-mri"
    if dest.exists() and not force:
        raise DownloadError(f"{dest} already exists (use force / --force to replace it)")
    archive, sha, md5 = fetch(url, to, progress=progress, timeout=timeout, step="downloading brain-tumor-mri")
    staging = Path(tempfile.mkdtemp(dir=to, prefix=".brain-tumor-mri-"))
    try:
        staging.chmod(new_file_mode(directory=True))  # renamed into place: a plain folder's mode, not mkdtemp's 0o700
        checks = _check_sha(sha, expected_sha256, url)
        n = extract_mri_zip(archive, staging)
        log.info("extracted %d files to %s", n, staging)
        checks += check_mri_tree(staging, expected_counts, progress=progress)
        result = DownloadResult(name="brain-tumor-mri", path=dest, url=url, sha256=sha, md5=md5, checks=checks)
        _write_record(staging / "download.json", result)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        archive.unlink(missing_ok=True)
    return result


def _download_npz(name: str, url: str, to: Path, official: bool, expected_sha256: str | None, force: bool,
                  progress: Progress | None, timeout: float) -> DownloadResult:
    dest = to / f"{name}.npz"
    if dest.exists() and not force:
        raise DownloadError(f"{dest} already exists (use force / --force to replace it)")
    tmp, sha, md5 = fetch(url, to, progress=progress, timeout=timeout, step=f"downloading {name}")
    try:
        checks = _check_sha(sha, expected_sha256, url)
        if official:
            if md5 != MEDMNIST_MD5[name]:
                raise DownloadError(f"MD5 of {url} is {md5}, the medmnist package records {MEDMNIST_MD5[name]}")
            checks.append("MD5 matches the medmnist record")
        checks += check_npz(tmp, f"{name}.npz from {url}")
        result = DownloadResult(name=name, path=dest, url=url, sha256=sha, md5=md5, checks=checks)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_record(to / f"{name}.npz.download.json", result)
    return result
