"""benchmarks/results_scoreboard.py: the scoreboard of docs/results/README.md is generated from the published
verdicts.json files, and the page holds exactly what the script prints."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("results_scoreboard", ROOT / "benchmarks" / "results_scoreboard.py")
sb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sb)


def _write(root: Path, table: str, task: str, verdicts: list[tuple[str, str, list[int]]]) -> None:
    """Each verdict: claim, status and its points' numbers of matched seeds (0: an undefined point)."""
    folder = root / table / task
    folder.mkdir(parents=True)
    (folder / "verdicts.json").write_text(json.dumps([
        {"claim": c, "status": s, "evidence": "...", "paper": "", "n": min(ns, default=0),
         "points": [{"where": f"point {k}", "n": n} for k, n in enumerate(ns)]} for c, s, ns in verdicts]))


def test_one_row_a_claim_with_each_tasks_status_seeds_and_link(tmp_path):
    _write(tmp_path, "fedsafe-table2", "meningioma", [
        ("Noise (DP (epsilon 9.3 (NbAFL sensitivity 2C/m))) lowers the ASR", "indicative: does not hold",
         [1, 2, 0]),
        ("Noise costs no clean accuracy", "inconclusive", [5])])
    _write(tmp_path, "fedsafe-table2", "glioma", [
        ("Noise (DP (epsilon 8.1 (NbAFL sensitivity 2C/m))) lowers the ASR", "holds", [5, 5])])
    _write(tmp_path, "crn-table1", "glioma", [("CRN | beats PGD", "undetermined", [0])])
    text = sb.scoreboard(tmp_path)
    lines = text.splitlines()
    assert lines[0] == ("4 verdicts (a claim on a task) in 2 republished reproductions (3 of their 4 reproduction-task "
                        "pairs): holds 1, inconclusive 1, indicative: does not hold 1, undetermined 1.")
    assert lines.index("| crn-table1: claim | meningioma | glioma |") < lines.index(
        "| fedsafe-table2: claim | meningioma | glioma |")  # the papers' order, not the alphabet's
    # the epsilon differs by task: still one claim, its figures left to the files
    assert ("| Noise lowers the ASR | [indicative: does not hold](fedsafe-table2/meningioma/fedsafe-table2.md) "
            "(n 1-2) | [holds](fedsafe-table2/glioma/fedsafe-table2.md) (n 5) |") in lines
    assert ("| Noise costs no clean accuracy | [inconclusive](fedsafe-table2/meningioma/fedsafe-table2.md) (n 5) "
            "| not yet |") in lines
    assert "| CRN / beats PGD | not yet | [undetermined](crn-table1/glioma/crn-table1.md) |" in lines


def test_the_results_page_holds_the_scoreboard_of_the_published_files():
    page = (ROOT / "docs" / "results" / "README.md").read_text()
    block = page[page.index(sb.BEGIN) + len(sb.BEGIN):page.index(sb.END)].strip("\n")
    assert block == sb.scoreboard(ROOT / "docs" / "results")
    assert "[inconclusive](crn-table1/meningioma/crn-table1.md)" in block  # a published file is read


def test_write_replaces_only_the_block_and_refuses_a_page_without_markers(tmp_path, monkeypatch):
    _write(tmp_path, "crn-fig3", "meningioma", [("ASR rises with eps", "inconclusive", [3])])
    page = tmp_path / "README.md"
    page.write_text(f"# Results\n\nbefore\n\n{sb.BEGIN}\nstale\n{sb.END}\n\nafter\n")
    monkeypatch.setattr("sys.argv", ["results_scoreboard.py", str(tmp_path), "--write"])
    sb.main()
    assert page.read_text() == (f"# Results\n\nbefore\n\n{sb.BEGIN}\n{sb.scoreboard(tmp_path)}\n{sb.END}\n\n"
                                "after\n")
    page.write_text("no markers")
    with pytest.raises(SystemExit, match="no scoreboard markers"):
        sb.main()
    assert page.read_text() == "no markers"


def test_a_verdict_without_per_point_numbers_is_refused_by_name(tmp_path):
    folder = tmp_path / "crn-fig2" / "glioma"
    folder.mkdir(parents=True)
    (folder / "verdicts.json").write_text(json.dumps([{"claim": "c", "status": "holds", "evidence": "n 5"}]))
    with pytest.raises(SystemExit, match=r"crn-fig2/glioma/verdicts.json: a verdict without per-point numbers"):
        sb.scoreboard(tmp_path)


def test_every_published_points_csv_holds_the_points_of_its_verdicts():
    files = sorted((ROOT / "docs" / "results").glob("*/*/verdicts.json"))
    for f in files:
        verdicts = json.loads(f.read_text())
        with (f.parent / "points.csv").open(newline="") as fh:
            rows = [(r["claim"], r["where"], int(r["n"]), r["seeds"], r["p"]) for r in csv.DictReader(fh)]
        flat = [(v["claim"], p["where"], p["n"], " ".join(map(str, p["seeds"])),
                 "" if p["p"] is None else repr(float(p["p"]))) for v in verdicts for p in v["points"]]
        assert rows == flat, f
        assert all(v["n"] == min((p["n"] for p in v["points"] if p["n"]), default=0) for v in verdicts), f
    assert len(files) >= 10  # the republished folders are read
