"""``fedsafe reproduce --pack / --unpack``: a reproduction written on another machine from the records alone equals
the one written where the runs trained; a run unpacked without weights refuses a new attack, saying why."""

from __future__ import annotations

from typer.testing import CliRunner

from fedsafe.cli import app

runner = CliRunner()
TINY = ("task.synthetic_size=150", "task.image_size=16", "model.width=0.05", "splits.client_test_size=10",
        "train.rounds=2", "threads=1")


def _args(results, *extra):
    return ["reproduce", "fedsafe-table1", "--task", "synthetic", "--quick", "--seeds", "1", "--no-report",
            "-o", str(results), *(a for s in TINY for a in ("--set", s)), *extra]


def test_a_table_written_from_unpacked_records_equals_the_table_written_where_the_runs_trained(tmp_path):
    here, there, archive = tmp_path / "here", tmp_path / "there", tmp_path / "records.tar.gz"
    res = runner.invoke(app, _args(here, "--pack", str(archive)))
    assert res.exit_code == 0, res.output
    assert "packed the records of 8 run(s)" in " ".join(res.output.split()) and archive.is_file()
    weights = sum(p.stat().st_size for p in here.glob("runs/*/models/**/*.pt"))
    assert archive.stat().st_size < weights / 5  # the records weigh a fraction of the weights

    res = runner.invoke(app, _args(there, "--unpack", str(archive), "--cached-only"))
    assert res.exit_code == 0, res.output
    assert "8 run(s) added" in " ".join(res.output.split())
    a, b = here / "fedsafe-table1" / "synthetic", there / "fedsafe-table1" / "synthetic"
    for name in ("fedsafe-table1.md", "rows.csv", "summary.csv", "table.csv", "verdicts.json", "points.csv"):
        assert (a / name).read_text().replace(str(here), "R") == (b / name).read_text().replace(str(there), "R"), name
    assert not list(there.glob("runs/*/models"))

    run = next(there.glob("runs/*/summary.json")).parent
    res = runner.invoke(app, ["attack", str(run)])
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "client_000.pt: missing: the run holds its records only" in text


def test_pack_and_unpack_name_what_is_wrong_in_one_line(tmp_path):
    res = runner.invoke(app, _args(tmp_path, "--dry-run", "--pack", str(tmp_path / "r.tar.gz")))
    assert res.exit_code == 1 and "--dry-run runs nothing, so there is nothing to pack" in " ".join(res.output.split())
    (tmp_path / "junk.tar.gz").write_text("junk")
    res = runner.invoke(app, _args(tmp_path, "--unpack", str(tmp_path / "junk.tar.gz")))
    assert res.exit_code == 1 and "junk.tar.gz: not a records archive" in " ".join(res.output.split())
    assert not (tmp_path / "runs").exists()
    bad_seeds = [a if a != "1" else "0,x" for a in _args(tmp_path, "--unpack", str(tmp_path / "junk.tar.gz"))]
    res = runner.invoke(app, bad_seeds)  # the options are checked before any archive is merged
    assert res.exit_code == 1 and "--seeds '0,x'" in res.output and "junk" not in res.output
