"""``fedsafe demo`` (tiny), and the reproduce / report commands' console behaviour."""

from __future__ import annotations

from typer.testing import CliRunner

from fedsafe.cli import app

runner = CliRunner()


def test_demo_tiny_writes_the_report_and_says_where(tmp_path):
    res = runner.invoke(app, ["demo", "--tiny", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    report = tmp_path / "demo" / "report.html"
    assert report.is_file() and report.stat().st_size > 10_000
    text = " ".join(res.output.split())
    assert "Report:" in text and "report.html" in text
    assert "fedsafe reproduce crn-table1 --task meningioma" in text  # how to run the same on real data
    assert "Transfer from a malicious client" in text and "PGD-1+CRN10" in text
    assert "synthetic" in text and "not real data" in text
    # a second demo reuses the cached runs and attacks
    again = runner.invoke(app, ["demo", "--tiny", "-o", str(tmp_path)])
    assert again.exit_code == 0 and "2 not yet cached" not in " ".join(again.output.split())


def test_reproduce_dry_run_prints_the_cost_and_trains_nothing(tmp_path):
    res = runner.invoke(app, ["reproduce", "crn-table1", "--task", "synthetic", "--quick", "--dry-run",
                              "-o", str(tmp_path), "--set", "task.synthetic_size=150",
                              "--set", "task.image_size=16"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "One seed: 1 training run(s), 1 not yet cached" in text and "QUICK" in text
    assert not (tmp_path / "runs").exists()


def test_reproduce_takes_groups_and_comma_separated_names(tmp_path):
    common = ["--task", "synthetic", "--quick", "--dry-run", "-o", str(tmp_path),
              "--set", "task.synthetic_size=150", "--set", "task.image_size=16"]
    res = runner.invoke(app, ["reproduce", "fedsafe", *common])
    assert res.exit_code == 0, res.output
    assert "fedsafe-table1, fedsafe-table2, fedsafe-fig3 on synthetic" in " ".join(res.output.split())
    res = runner.invoke(app, ["reproduce", "crn-table1, fedsafe-table2", *common])
    assert res.exit_code == 0, res.output
    assert "crn-table1, fedsafe-table2 on synthetic" in " ".join(res.output.split())
    res = runner.invoke(app, ["reproduce", "crn-table1,nope", *common])
    assert res.exit_code == 1 and "unknown reproduction 'nope'" in " ".join(res.output.split())


def test_reproduce_names_a_missing_data_path(tmp_path):
    res = runner.invoke(app, ["reproduce", "crn-table1", "--task", "glioma", "-o", str(tmp_path),
                              "--set", f"task.data_root={tmp_path / 'nowhere'}"])
    assert res.exit_code == 1 and "nowhere" in " ".join(res.output.split())


def test_report_of_a_directory_without_results_fails_cleanly(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path), "-o", str(tmp_path / "out")])
    assert res.exit_code == 1 and "neither a results directory" in " ".join(res.output.split())


def test_reproduce_cached_only_refuses_what_is_not_cached_and_rewrites_what_is(tmp_path):
    tiny = ("task.synthetic_size=150", "task.image_size=16", "model.width=0.05", "splits.client_test_size=10",
            "train.rounds=2", "threads=1")
    common = ["reproduce", "fedsafe-table1", "--task", "synthetic", "--quick", "--seeds", "1", "--no-report",
              "-o", str(tmp_path), *(a for s in tiny for a in ("--set", s))]
    res = runner.invoke(app, [*common, "--cached-only"])
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and f"--cached-only: {8 + 8 * 4} item(s) not cached" in text  # 8 runs x 4 attacks
    assert "e.g. training " in text and "run without --cached-only to compute them" in text
    assert not (tmp_path / "fedsafe-table1").exists() and not list(tmp_path.glob("runs/*/summary.json"))

    assert runner.invoke(app, common).exit_code == 0  # computes and writes everything
    folder = tmp_path / "fedsafe-table1" / "synthetic"
    files = {f: (folder / f).read_bytes() for f in ("fedsafe-table1.md", "rows.csv", "summary.csv", "table.csv")}
    cached = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/**/*") if p.is_file()}
    (folder / "fedsafe-table1.md").write_text("stale")

    res = runner.invoke(app, [*common, "--cached-only"])
    assert res.exit_code == 0, res.output
    assert {f: (folder / f).read_bytes() for f in files} == files  # rewritten from the cache, the same
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/**/*") if p.is_file()} == cached  # nothing recomputed
