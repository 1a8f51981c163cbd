"""Records archives: runs without their model weights, to carry between machines and merge.

A run's *records* are everything in its directory but the weights (``models/``, ``checkpoint.pt``,
``checkpoint.prev.pt``) and the lock: its config, data fingerprint and report, splits, metrics, privacy report,
summary, every attack evaluation (``attacks/``) and audit (``audit/``). The tables, figures and verdicts of a
reproduction are written from them alone, and they weigh a few percent of the run. So the seeds of one table can be
computed on several machines (or in sessions whose disk does not survive), each packing what it computed, and the
table written from all of them on any machine::

    fedsafe reproduce fedsafe-adaptive --task glioma --seeds 0,1 -o A --pack seeds-0-1.tar.gz    # machine 1
    fedsafe reproduce fedsafe-adaptive --task glioma --seeds 2,3,4 -o B --pack seeds-2-4.tar.gz  # machine 2
    fedsafe reproduce fedsafe-adaptive --task glioma --seeds 5 -o C --unpack seeds-0-1.tar.gz \\
        --unpack seeds-2-4.tar.gz --cached-only

A run keeps its key (the content hash of its data and settings, :mod:`fedsafe.reproduce.run_cache`), so a merged run
is found exactly where the planner looks. An unpacked run is complete (its ``summary.json`` is there) but holds no
weights: what is in its records is read as it is, and anything that would attack it again stops with an error naming
the missing model (:func:`fedsafe.evaluation.run_context.load_context`).

Archives are portable and deterministic. The machine's absolute paths are left out: the data root of
``data_fingerprint.json`` becomes null (its ``source`` names the data) and an attack record's ``run_dir`` and ``csv``
become the run's folder name and the CSV's path inside the run (:func:`portable`). The archive is a gzip'd tar of
regular files ``runs/<run>/<path>``, sorted, with mtime 0, owner 0 and mode 0o644: the same records give the same
bytes. Unpacking refuses any other member (an absolute path, ``..``, a link, a device, a weights file), and merges
all or nothing: a new run is staged, then renamed into place whole; a run already here takes the files it lacks, and
a file on both sides must be the same once made portable, else nothing is written and the error names the file.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..jsonsafe import dumps_json
from .atomic import write_bytes
from .claim import own_tmp_files
from .errors import RunFileError
from .layout import ATTACKS, CHECKPOINT, CHECKPOINT_PREV, DATA_FINGERPRINT, LOCK, MODELS, RunLayout

__all__ = ["RecordsError", "Unpacked", "pack_records", "portable", "read_archive", "record_files", "unpack_records"]

RUNS = "runs"
"""The archive's top folder, as in a results folder (``RESULTS/runs/<run>``)."""
WEIGHTS = (MODELS, CHECKPOINT, CHECKPOINT_PREV)
"""What a run's records leave out: its model weights and checkpoints (the bulk of it)."""
MAX_BYTES = 1 << 30
"""The most an archive may unpack to (a table's records on five seeds weigh about a megabyte)."""
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{12}")
"""A cached run's folder name: ``<task>-<first 12 hex digits of its key>``."""


class RecordsError(RunFileError):
    """A records archive that cannot be read, holds what records never hold, or disagrees with a run here."""


@dataclass(frozen=True)
class Unpacked:
    """What :func:`unpack_records` did: runs written whole, runs that took files they lacked, runs already equal."""

    added: tuple[str, ...]
    completed: tuple[str, ...]
    unchanged: tuple[str, ...]

    def describe(self) -> str:
        return (f"{len(self.added)} run(s) added, {len(self.completed)} completed with files they lacked, "
                f"{len(self.unchanged)} already here")


def _is_record(rel: PurePosixPath) -> bool:
    return rel.parts[0] not in WEIGHTS and rel.name != LOCK


def record_files(run_dir: Path) -> list[PurePosixPath]:
    """The records of the run at ``run_dir`` (paths inside it, sorted): every regular file but the weights, the lock
    and the temporary files of killed writes (:func:`fedsafe.runs.claim.own_tmp_files`)."""
    run_dir = Path(run_dir)
    stale = set(own_tmp_files(run_dir))
    out = [PurePosixPath(p.relative_to(run_dir).as_posix()) for p in run_dir.rglob("*")
           if p.is_file() and not p.is_symlink() and p not in stale]
    return sorted(r for r in out if _is_record(r))


def portable(rel: PurePosixPath, data: bytes, run_name: str) -> bytes:
    """The bytes of record ``rel`` of run ``run_name`` without this machine's absolute paths (module docstring);
    other files as they are."""
    attack_record = rel.parent == PurePosixPath(ATTACKS) and rel.suffix == ".json"
    if str(rel) != DATA_FINGERPRINT and not attack_record:
        return data
    try:
        obj = json.loads(data)
    except ValueError:
        return data  # a damaged file is carried as it is; the reader that needs it names it
    if not isinstance(obj, dict):
        return data
    if str(rel) == DATA_FINGERPRINT and obj.get("root") is not None:
        obj["root"] = None
    elif attack_record and ("run_dir" in obj or "csv" in obj):
        if "run_dir" in obj:
            obj["run_dir"] = run_name
        if isinstance(obj.get("csv"), str):
            obj["csv"] = f"{ATTACKS}/{PurePosixPath(obj['csv']).name}"
    else:
        return data
    return (dumps_json(obj, indent=2) + "\n").encode()


def pack_records(run_dirs: Iterable[Path], archive: Path) -> int:
    """Write the records of the complete runs ``run_dirs`` to ``archive`` (a .tar.gz, written atomically); returns
    the number of files. RecordsError names a run that is not complete (nothing is written)."""
    members: list[tuple[str, bytes]] = []
    for rd in sorted({Path(r) for r in run_dirs}, key=lambda p: p.name):
        if not RunLayout(rd).is_complete():
            raise RecordsError(f"{rd}: not a complete run (no valid {RunLayout(rd).summary.name}): only finished "
                               "runs are packed")
        for rel in record_files(rd):
            members.append((f"{RUNS}/{rd.name}/{rel}", portable(rel, (rd / rel).read_bytes(), rd.name)))
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(data))
    write_bytes(archive, buf.getvalue())
    return len(members)


def read_archive(archive: Path) -> dict[str, dict[PurePosixPath, bytes]]:
    """Run name -> (path inside the run -> bytes) of a records archive; RecordsError names the archive and the first
    member that records never hold."""
    archive = Path(archive)
    runs: dict[str, dict[PurePosixPath, bytes]] = {}
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for m in tar:
                total += m.size
                if total > MAX_BYTES:
                    raise RecordsError(f"{archive}: unpacks to more than {MAX_BYTES >> 20} MiB: not a records "
                                       "archive (records hold no weights)")
                parts = PurePosixPath(m.name).parts
                rel = PurePosixPath(*parts[2:]) if len(parts) > 2 else None
                if not m.isfile() or m.name.startswith("/") or len(parts) < 3 or parts[0] != RUNS \
                        or not RUN_NAME.fullmatch(parts[1]) or ".." in parts or not _is_record(rel):
                    raise RecordsError(f"{archive}: member {m.name!r} is not a run's record (expected regular files "
                                       f"{RUNS}/<task>-<key>/<path>, no model weights, links or '..')")
                f = tar.extractfile(m)
                runs.setdefault(parts[1], {})[rel] = f.read() if f is not None else b""
    except FileNotFoundError:
        raise RecordsError(f"{archive}: no such records archive") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise RecordsError(f"{archive}: not a records archive (a .tar.gz from fedsafe reproduce --pack): "
                           f"{e.__class__.__name__}") from None
    return runs


def unpack_records(archive: Path, runs_dir: Path) -> Unpacked:
    """Merge the records ``archive`` into ``runs_dir`` (``RESULTS/runs``), all or nothing (module docstring)."""
    runs_dir = Path(runs_dir)
    incoming = read_archive(archive)
    added, completed, unchanged, to_add = [], [], [], {}
    for name, files in sorted(incoming.items()):
        here = runs_dir / name
        if not here.exists():
            added.append(name)
            continue
        if not RunLayout(here).is_complete():
            raise RecordsError(f"{here}: an unfinished run here, finished in {archive}: finish it or delete the "
                               "folder, then unpack again")
        missing = {}
        for rel, data in files.items():
            local = here / rel
            if not local.is_file():
                missing[rel] = data
            elif portable(rel, local.read_bytes(), name) != data:
                raise RecordsError(f"{local}: differs from its copy in {archive} (the run was computed twice, "
                                   "differently?): nothing was unpacked; unpack into a fresh results folder")
        (completed if missing else unchanged).append(name)
        to_add[name] = missing
    runs_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=runs_dir, prefix=".unpack-"))
    try:
        for name in added:
            for rel, data in incoming[name].items():
                write_bytes(stage / name / rel, data)
        for name in added:
            (stage / name).rename(runs_dir / name)
        for name, missing in to_add.items():
            for rel, data in sorted(missing.items()):
                write_bytes(runs_dir / name / rel, data)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(stage)
    return Unpacked(added=tuple(added), completed=tuple(completed), unchanged=tuple(unchanged))

