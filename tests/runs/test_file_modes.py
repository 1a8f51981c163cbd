"""Files fedsafe writes get the mode a plainly opened file gets (0o666 less the umask), folders a plain folder's:
the atomic writes go through a temporary file, which tempfile makes 0o600 (0o700 for a folder), and a results
folder shared with a team would otherwise be readable by its writer only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedsafe.cli import app
from fedsafe.data.cache import save_entry
from fedsafe.runs.atomic import new_file_mode, temp_file, torch_save, write_json, write_text


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_mode_of_a_new_file_follows_the_umask(umask):
    assert new_file_mode() == 0o666 & ~umask and new_file_mode(directory=True) == 0o777 & ~umask


def test_atomic_writes_give_what_open_gives(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # the reference: open(path, "w")
    write_text(tmp_path / "a.txt", "x")
    write_json(tmp_path / "b.json", {"a": 1})
    torch_save({"w": 1}, tmp_path / "c.pt")
    save_entry(tmp_path / "cache" / "d.npz", {"a": np.arange(3)})
    for f in ("a.txt", "b.json", "c.pt", "cache/d.npz"):
        assert _mode(tmp_path / f) == _mode(plain) == 0o666 & ~umask, f


def test_a_temporary_file_has_the_final_mode_before_it_is_renamed(tmp_path, umask):
    fd, name = temp_file(tmp_path, ".x.", ".tmp")
    os.close(fd)
    assert _mode(Path(name)) == 0o666 & ~umask


def test_fedsafe_report_writes_a_page_the_team_can_read(tmp_path):
    folder = Path(__file__).resolve().parents[2] / "docs" / "results" / "crn-table1" / "glioma"
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(app, ["report", str(folder), "-o", str(tmp_path)])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert _mode(tmp_path / "report.html") == 0o644  # for colleagues and a web server, not 0o600
