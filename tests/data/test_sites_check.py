"""``fedsafe data check --sites-csv FILE``: the image-folder task's sites CSV as the training code reads it, with
the sites (images per site and class), the patient groups and the settings that partition a federation by site;
bad CSV input is a one-line error naming the file and line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedsafe.build import prepare_data
from fedsafe.cli import app
from fedsafe.config import load_config
from fedsafe.data.folder import read_sites_csv, site_summary

from .test_folder import CLASSES, make_folder, sha, write_csv

PER_SITE = {"hospital-A": 6, "hospital-B": 4}


def check(root: Path, *args: str, cache: Path) -> tuple[int, str]:
    """The exit code and standard output of ``fedsafe data check``, or its error line when it fails (the progress
    bars above it on standard error left out; exactly one line, never a traceback)."""
    r = CliRunner().invoke(app, ["data", "check", str(root), "--size", "8", "--cache-dir", str(cache), *args],
                           env={"COLUMNS": "300"})
    if r.exit_code == 0:
        return 0, r.stdout
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.output and r.output.rstrip().endswith(errors[0]), r.output
    return r.exit_code, errors[0]


@pytest.fixture
def folder(tmp_path):
    root, rows = make_folder(tmp_path / "imgs", per_site=PER_SITE)
    rows["train/benign/hospital-B-000.png"] = ("hospital-B", "")  # one image without a patient
    write_csv(root, rows)
    return root, rows


def test_data_check_reports_images_per_site_and_class_and_the_patients(folder, tmp_path):
    root, rows = folder
    code, output = check(root, "--sites-csv", "sites.csv", "--json", cache=tmp_path / "cache")
    assert code == 0, output
    sites = json.loads(output)["sites"]

    # the expected numbers, counted from the rows written (not by the code under test)
    per_class = Counter((s, f.split("/")[1]) for f, (s, _) in rows.items())
    patients = {(s, p) for s, p in rows.values() if p}
    assert sites["csv"] == str(root / "sites.csv") and sites["unused_rows"] == 0
    assert list(sites["sites"]) == sorted(PER_SITE)
    for name, n in PER_SITE.items():
        got = sites["sites"][name]
        assert got["classes"] == {c: per_class[(name, c)] for c in CLASSES} and got["images"] == 2 * n
        assert got["patients"] == len({p for s, p in patients if s == name})
        assert got["images_without_patient"] == sum(1 for s, p in rows.values() if s == name and not p)
    assert sites["patients"] == len(patients) == 6 + 4  # hospital-B's b0 keeps one image of its two
    assert sites["largest_patient"] == max(Counter((s, p) for s, p in rows.values() if p).values()) == 2
    at = Counter(p for _, p in patients)
    assert sites["patient_ids_at_two_sites"] == sum(n > 1 for n in at.values()) == 4  # b0, b1, m0, m1
    # no near-duplicates among noise pictures: one group a patient, one an image without a patient
    assert sites["split_groups"] == len(patients) + sum(1 for _, p in rows.values() if not p) == 11

    code, text = check(root, "--sites-csv", "sites.csv", cache=tmp_path / "cache")
    text = " ".join(text.split())
    # site, benign, malignant, images, patients, images without a patient
    assert code == 0 and "Images per site and class" in text and "hospital-A │ 6 │ 6 │ 12 │ 6 │ 0" in text, text
    assert "hospital-B │ 4 │ 4 │ 8 │ 4 │ 1" in text and "10 patient(s) named (at most 2 image(s) each)" in text
    hint = "--set task.sites_csv=sites.csv --set splits.partition=sites --set splits.num_clients=2"
    assert f"partition by site: {hint}" in text


def test_the_partition_the_check_prints_trains_by_site(folder, tmp_path):
    root, rows = folder
    code, text = check(root, "--sites-csv", str(root / "sites.csv"), cache=tmp_path / "cache")
    line = next(x for x in text.splitlines() if x.startswith("partition by site:"))
    overrides = line.removeprefix("partition by site:").split("--set")[1:]
    cfg = load_config(overrides=[o.strip() for o in overrides] + [
        "task.name=image-folder", f"task.data_root={root}", "task.image_size=8", f"task.cache_dir={tmp_path / 'c'}",
        "splits.client_test_size=2", "splits.server_size=0.1", "splits.global_test_size=0.1", "train.device=cpu"])
    data = prepare_data(cfg)
    site_of = {sha(root / f): s for f, (s, _) in rows.items()}
    assert [{site_of[i] for i in c.ids} for c in data.client_train] == [{"hospital-A"}, {"hospital-B"}]


def test_a_csv_in_the_current_folder_and_one_nowhere(folder, tmp_path, monkeypatch):
    root, _ = folder
    elsewhere = tmp_path / "here"
    elsewhere.mkdir()
    (elsewhere / "mine.csv").write_bytes((root / "sites.csv").read_bytes())
    monkeypatch.chdir(elsewhere)
    code, output = check(root, "--sites-csv", "mine.csv", "--json", cache=tmp_path / "cache")
    assert code == 0 and json.loads(output)["sites"]["csv"] == str(elsewhere / "mine.csv"), output
    code, output = check(root, "--sites-csv", "nowhere.csv", cache=tmp_path / "cache")
    assert code == 1 and "sites CSV not found: nowhere.csv" in output, output
    assert f"looked in {root} and in the current folder" in output


BAD = {  # CSV text -> what the one-line error says, after the file's name
    "file,site\n{a},A\n{a},B\n": ", line 3: '{a}' is named twice (first on line 2)",
    "file,site,patient\n{a},A,p\n\n{b},,p\n": ", line 4: empty site",
    "file,site,patient\n{all}\ntrain/benign/gone.png,A\n": ", line 22: 1 row(s) name files that are not images under",
    "file,site\n{a},A\n": ": 19 image(s) have no row, e.g. ",
    "path,hospital\n{a},A\n": ": no 'file' column (columns: path, hospital)",
    "file,site\n{a},A\n" + "x" * 140_000 + ",A\n": ", line 3: field larger than field limit",
    "file,site\n{a},A\n{b},\udcff\n": ", line 3: not UTF-8 text",
    "file,site\n": ": no rows",
}


@pytest.mark.parametrize("text", list(BAD), ids=range(len(BAD)))
def test_bad_sites_csv_is_one_line_naming_the_file_and_line(folder, tmp_path, text):
    root, rows = folder
    a, b = list(rows)[:2]
    bad = root / "bad.csv"
    every = "\n".join(f"{f},{s},{p}" for f, (s, p) in rows.items())  # 20 rows: lines 2..21
    bad.write_bytes(text.format(a=a, b=b, all=every).encode("utf-8", "surrogateescape"))
    code, output = check(root, "--sites-csv", "bad.csv", cache=tmp_path / "cache")
    assert code == 1 and output.startswith(f"error: {bad}{BAD[text].format(a=a)}"), output


def test_sites_csv_is_for_the_image_folder_task(folder, tmp_path):
    root, _ = folder
    code, output = check(root, "--task", "meningioma", "--sites-csv", "sites.csv", cache=tmp_path / "cache")
    assert code == 2 and "--sites-csv applies to --task image-folder, not 'meningioma'" in output
    r = CliRunner().invoke(app, ["data", "check", "--task", "image-folder", "--sites-csv", "sites.csv"])
    assert r.exit_code == 2 and "give its PATH" in r.output


def test_extra_fields_on_a_row_are_ignored_like_extra_columns(tmp_path):
    (tmp_path / "s.csv").write_text("file,site\na.png,A,extra,more\nb.png,B\n")
    table = read_sites_csv(tmp_path / "s.csv")
    assert table.site == {"a.png": "A", "b.png": "B"} and table.line == {"a.png": 2, "b.png": 3}


def test_site_summary_counts_equal_a_direct_count():
    rng = np.random.default_rng(1)
    sites = tuple(rng.choice(["X", "Y", "Z"], 60).tolist())
    patients = [str(p) if p < 8 else "" for p in rng.integers(0, 12, 60)]
    labels = rng.integers(0, 3, 60)
    groups = rng.integers(0, 25, 60)
    s = site_summary(sites, patients, labels, ("a", "b", "c"), groups)
    for name in ("X", "Y", "Z"):
        idx = [i for i in range(60) if sites[i] == name]
        assert s["sites"][name]["classes"] == {c: sum(labels[i] == k for i in idx) for k, c in enumerate("abc")}
        assert s["sites"][name]["patients"] == len({patients[i] for i in idx} - {""})
    pairs = Counter((sites[i], patients[i]) for i in range(60) if patients[i])
    assert s["patients"] == len(pairs) and s["largest_patient"] == max(pairs.values())
    assert s["split_groups"] == len(np.unique(groups))
