"""Records archives (fedsafe.runs.records): a run's files but its weights, portable, deterministic, merged all or
nothing; members records never hold are refused before anything is written."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from fedsafe.runs import records
from fedsafe.runs.records import RecordsError, pack_records, read_archive, record_files, unpack_records

NAME = "glioma-0123456789ab"


def _run(root: Path, name: str = NAME, *, complete: bool = True) -> Path:
    """A run folder as training and evaluation leave it: records, weights, a lock and an atomic write's temp file."""
    rd = root / name
    files = {
        ".fedsafe-run": '{"kind": "fedsafe-run", "format": 1}\n',
        "config.yaml": "seed: 0\n",
        "metrics.json": "[]\n",
        "data_fingerprint.json": json.dumps({"format": 1, "root": str(root / "data"), "source": "../data"}),
        "attacks/pgd20-abc.json": json.dumps({"key": "pgd20-abc", "run_dir": str(rd),
                                              "csv": str(rd / "attacks" / "pgd20-abc.csv"), "n": 3}),
        "attacks/pgd20-abc.csv": "attacker,target,asr\n0,1,0.5\n",
        "audit/mia-1234.json": '{"auc": 0.5}\n',
        "models/final/client_000.pt": "weights",
        "models/global/round_0002.pt": "weights",
        "checkpoint.pt": "weights",
        "checkpoint.prev.pt": "weights",
        ".lock": "123",
        "attacks/.pgd20-def.json.x1y2.tmp": "half",
        **({"summary.json": '{"global_acc": 0.9}\n'} if complete else {}),
    }
    for rel, text in files.items():
        (rd / rel).parent.mkdir(parents=True, exist_ok=True)
        (rd / rel).write_text(text)
    return rd


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def test_a_pack_holds_every_record_and_no_weight_lock_or_temporary_file(tmp_path):
    rd = _run(tmp_path / "results" / "runs")
    assert pack_records([rd], tmp_path / "r.tar.gz") == 8
    got = _members(tmp_path / "r.tar.gz")
    assert sorted(got) == [f"runs/{NAME}/{r}" for r in (".fedsafe-run", "attacks/pgd20-abc.csv",
                                                        "attacks/pgd20-abc.json", "audit/mia-1234.json",
                                                        "config.yaml", "data_fingerprint.json", "metrics.json",
                                                        "summary.json")]
    assert [str(r) for r in record_files(rd)] == [m.split("/", 2)[2] for m in sorted(got)]


def test_a_pack_leaves_out_this_machines_paths(tmp_path):
    rd = _run(tmp_path / "results" / "runs")
    pack_records([rd], tmp_path / "r.tar.gz")
    got = _members(tmp_path / "r.tar.gz")
    assert all(str(tmp_path).encode() not in data for data in got.values())
    record = json.loads(got[f"runs/{NAME}/attacks/pgd20-abc.json"])
    assert (record["run_dir"], record["csv"], record["n"]) == (NAME, "attacks/pgd20-abc.csv", 3)
    fingerprint = json.loads(got[f"runs/{NAME}/data_fingerprint.json"])
    assert fingerprint == {"format": 1, "root": None, "source": "../data"}
    assert got[f"runs/{NAME}/attacks/pgd20-abc.csv"] == (rd / "attacks" / "pgd20-abc.csv").read_bytes()


def test_the_same_records_give_the_same_bytes(tmp_path):
    rd = _run(tmp_path / "runs")
    pack_records([rd], tmp_path / "a.tar.gz")
    for p in rd.rglob("*"):
        os.utime(p, (1_000_000, 1_000_000))  # other times, same contents
    pack_records([rd], tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "a.tar.gz", "r:gz") as tar:
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in tar} == {(0, 0, 0, 0o644)}


def test_an_unfinished_run_is_not_packed(tmp_path):
    rd = _run(tmp_path / "runs", complete=False)
    with pytest.raises(RecordsError, match=f"{NAME}: not a complete run"):
        pack_records([rd], tmp_path / "r.tar.gz")
    assert not (tmp_path / "r.tar.gz").exists()


def test_unpacking_writes_the_runs_records_readable_as_open_would_make_them(tmp_path):
    pack_records([_run(tmp_path / "a" / "runs")], tmp_path / "r.tar.gz")
    old = os.umask(0o022)
    try:
        done = unpack_records(tmp_path / "r.tar.gz", tmp_path / "b" / "runs")
    finally:
        os.umask(old)
    assert (done.added, done.completed, done.unchanged) == ((NAME,), (), ())
    here = tmp_path / "b" / "runs" / NAME
    assert [str(r) for r in record_files(here)] == [str(r) for r in record_files(tmp_path / "a" / "runs" / NAME)]
    assert not (here / "models").exists() and not (here / "checkpoint.pt").exists()
    assert here.stat().st_mode & 0o777 == 0o755 and (here / "summary.json").stat().st_mode & 0o777 == 0o644
    assert not list((tmp_path / "b" / "runs").glob(".unpack-*"))  # the stage is gone
    again = unpack_records(tmp_path / "r.tar.gz", tmp_path / "b" / "runs")
    assert (again.added, again.completed, again.unchanged) == ((), (), (NAME,))


def test_a_run_here_takes_the_records_it_lacks_and_its_own_paths_do_not_count_as_a_difference(tmp_path):
    theirs = _run(tmp_path / "a" / "runs")
    (theirs / "attacks" / "eot-xyz.json").write_text('{"key": "eot-xyz"}\n')
    pack_records([theirs], tmp_path / "r.tar.gz")
    ours = _run(tmp_path / "b" / "runs")  # the same run with this machine's paths, its weights, not the EOT record
    done = unpack_records(tmp_path / "r.tar.gz", tmp_path / "b" / "runs")
    assert (done.added, done.completed, done.unchanged) == ((), (NAME,), ())
    assert (ours / "attacks" / "eot-xyz.json").read_text() == '{"key": "eot-xyz"}\n'
    assert (ours / "models" / "final" / "client_000.pt").read_text() == "weights"  # untouched
    assert json.loads((ours / "attacks" / "pgd20-abc.json").read_text())["run_dir"] == str(ours)  # kept as it was


def test_a_record_that_differs_stops_the_whole_unpack_and_names_the_file(tmp_path):
    pack_records([_run(tmp_path / "a" / "runs"), _run(tmp_path / "a" / "runs", "glioma-ffffffffffff")],
                 tmp_path / "r.tar.gz")
    ours = _run(tmp_path / "b" / "runs")
    (ours / "summary.json").write_text('{"global_acc": 0.8}\n')
    with pytest.raises(RecordsError, match=rf"{NAME}/summary.json: differs from its copy in .*r.tar.gz"):
        unpack_records(tmp_path / "r.tar.gz", tmp_path / "b" / "runs")
    assert sorted(p.name for p in (tmp_path / "b" / "runs").iterdir()) == [NAME]  # the other run not added either


def test_an_unfinished_run_here_is_not_completed_from_an_archive(tmp_path):
    pack_records([_run(tmp_path / "a" / "runs")], tmp_path / "r.tar.gz")
    ours = _run(tmp_path / "b" / "runs", complete=False)
    with pytest.raises(RecordsError, match=f"{NAME}: an unfinished run here"):
        unpack_records(tmp_path / "r.tar.gz", tmp_path / "b" / "runs")
    assert not (ours / "summary.json").exists()


def _archive(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(b"x") if m.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize("member", [
    _file("../evil"), _file("/etc/evil"), _file(f"runs/{NAME}/../../evil"), _file("runs/not-a-run/summary.json"),
    _file(f"runs/{NAME}/models/final/client_000.pt"), _file(f"runs/{NAME}/checkpoint.pt"), _file(f"runs/{NAME}"),
    _link(f"runs/{NAME}/summary.json", "/etc/passwd"), _file("elsewhere/x"),
], ids=lambda m: m.name)
def test_a_member_records_never_hold_is_refused_before_anything_is_written(tmp_path, member):
    archive = _archive(tmp_path / "bad.tar.gz", [_file(f"runs/{NAME}/summary.json"), member])
    with pytest.raises(RecordsError, match=r"bad.tar.gz: member .* is not a run's record"):
        unpack_records(archive, tmp_path / "results" / "runs")
    assert not (tmp_path / "results").exists() and not (tmp_path / "evil").exists()


def test_a_missing_or_foreign_archive_is_named(tmp_path):
    with pytest.raises(RecordsError, match="nope.tar.gz: no such records archive"):
        read_archive(tmp_path / "nope.tar.gz")
    (tmp_path / "text.tar.gz").write_text("not an archive")
    with pytest.raises(RecordsError, match="text.tar.gz: not a records archive"):
        read_archive(tmp_path / "text.tar.gz")


def test_an_archive_that_unpacks_to_more_than_records_ever_weigh_is_refused_unread(tmp_path, monkeypatch):
    pack_records([_run(tmp_path / "runs")], tmp_path / "r.tar.gz")
    assert read_archive(tmp_path / "r.tar.gz")
    monkeypatch.setattr(records, "MAX_BYTES", 100)
    with pytest.raises(RecordsError, match=r"r.tar.gz: unpacks to more than 0 MiB: not a records archive"):
        read_archive(tmp_path / "r.tar.gz")
