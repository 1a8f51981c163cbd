"""The run directory's layout has one home (fedsafe.runs.layout), and one opener (fedsafe.runs.open_run).

The source test reads every module outside ``fedsafe.runs`` (ast): no string in its code (docstrings and comments
aside) spells a file name of the layout, and no path is joined with one of its folder names; the names are taken
from the layout module itself, so a name added there is checked at once.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from fedsafe.config import ConfigError, config_hash, load_config, to_yaml
from fedsafe.runs import Run, RunLayout, open_run
from fedsafe.runs import layout as layout_module
from fedsafe.runs.claim import MARKER_FORMAT
from fedsafe.runs.errors import RunDirRefused, RunFileError, RunFileMissing
from fedsafe.runs.layout import ATTACKS, AUDIT, FILE_NAMES, MODELS

SRC = Path(__file__).resolve().parents[2] / "src" / "fedsafe"
FOLDERS = (MODELS, ATTACKS, AUDIT)


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def layout_spellings(text: str, names=FILE_NAMES, folders=FOLDERS) -> list[str]:
    """The strings of the code ``text`` that spell a layout file name, or a layout folder joined into a path
    (``root / "attacks"``, ``"attacks/..."``); docstrings are left aside, and so is a path written for the reader
    after ``RUN/`` (a command's help: ``RUN/audit/``), which names no real path."""
    tree = ast.parse(text)
    docs = _docstrings(tree)
    files = [n for n in names if "." in n]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            s = re.sub(r"RUN/[\w./-]*", "", node.value)
            found += [s for n in files if n in s]
            found += [s for f in folders if s.startswith(f + "/") or f"/{f}/" in s or s.endswith("/" + f)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found += [o.value for o in (node.left, node.right)
                      if isinstance(o, ast.Constant) and isinstance(o.value, str) and o.value in folders]
    return found


def test_the_spelling_check_catches_hand_built_paths():
    assert layout_spellings('p = Path(run_dir) / "attacks" / f"{key}.json"') == ["attacks"]
    assert layout_spellings('p = root / "summary.json"') == ["summary.json"]
    assert layout_spellings('raise ValueError(f"{root}: no config.yaml")') == [": no config.yaml"]
    assert layout_spellings('g = runs.glob("*/summary.json")') == ["*/summary.json"]
    assert layout_spellings('p = f"{root}/audit/mia.json"') == ["/audit/mia.json"]
    assert layout_spellings('h = "a JSON summary in RUN/audit/ and RUN/summary.json"') == []  # for the reader
    # not a path: a dict key or a column named like a folder, and a docstring that names a file
    assert layout_spellings('"""Reads summary.json."""\nd = {"attacks": 1}\nx = "models" in frame') == []


def test_no_module_outside_runs_spells_a_run_directory_name():
    assert len(FILE_NAMES) >= 19 and "summary.json" in FILE_NAMES and "sanity.json" in FILE_NAMES
    modules = [p for p in SRC.rglob("*.py") if "runs" not in p.relative_to(SRC).parts[:1]]
    assert len(modules) > 50, "SRC is wrong"
    bad = {str(p.relative_to(SRC)): hits for p in modules if (hits := layout_spellings(p.read_text()))}
    assert not bad, f"ask fedsafe.runs.layout instead: {bad}"


def test_every_path_of_the_layout_is_under_the_run_and_named_in_the_module_docstring():
    lay = RunLayout(Path("r"))
    paths = [lay.marker, lay.config, lay.data_fingerprint, lay.data_report, lay.privacy_report, lay.metrics,
             lay.splits, lay.checkpoint, lay.previous_checkpoint, lay.summary, lay.global_model(3),
             lay.received(2, 1), lay.final_model(0), lay.attack_result("k", ".csv"), lay.sanity, lay.crn_tables,
             lay.audit_summary, lay.audit_page, lay.audit_inputs, lay.masking("h"), lay.mia("k")]
    assert len(set(paths)) == len(paths) and all(p.parts[0] == "r" for p in paths)
    assert str(lay.global_model(3)) == "r/models/global/round_0003.pt"
    assert str(lay.received(2, 1)) == "r/models/received/round_0002/client_001.pt"
    assert str(lay.final_model(12)) == "r/models/final/client_012.pt"
    assert lay.derived == (Path("r/attacks"), Path("r/audit"))
    doc = layout_module.__doc__
    assert all(name in doc for name in FILE_NAMES)


# -- the opener -------------------------------------------------------------------------------------------------


def _cfg(*sets: str):
    return load_config(overrides=["task.name=synthetic", "train.rounds=2", *sets])


def _write_run(root: Path, cfg, **records) -> None:
    lay = RunLayout(root)
    root.mkdir(parents=True)
    lay.marker.write_text(json.dumps({"kind": "fedsafe-run", "format": MARKER_FORMAT}))
    lay.config.write_text(to_yaml(cfg))
    for attr, obj in records.items():
        getattr(lay, attr).write_text(json.dumps(obj))


def test_open_run_reads_the_config_and_the_records(tmp_path):
    cfg = _cfg()
    _write_run(tmp_path / "run", cfg, summary={"global_acc": 0.5}, metrics=[{"round": 1}],
               privacy_report={"sigma_uplink": 0.1, "sigma_downlink": 0.2, "clip": 1.0, "pld": {"epsilon": 3.5}})
    run = open_run(tmp_path / "run")
    assert isinstance(run, Run) and run.exists and run.config == cfg and run.layout == RunLayout(tmp_path / "run")
    assert run.store.config_hash == config_hash(cfg) and run.store.root == tmp_path / "run"
    assert run.summary == {"global_acc": 0.5} and run.complete and run.metrics == [{"round": 1}]
    assert run.data_report == {}  # missing: a run still training
    assert (run.noise().uplink, run.noise().downlink, run.noise().clip, run.epsilon()) == (0.1, 0.2, 1.0, 3.5)


def test_open_run_refuses_what_is_not_a_run_in_one_line(tmp_path):
    with pytest.raises(RunFileMissing, match="nowhere: no such directory"):
        open_run(tmp_path / "nowhere")
    with pytest.raises(RunFileMissing, match="config.yaml: missing: .* is not a fedsafe run directory"):
        open_run(tmp_path)
    (tmp_path / "config.yaml").write_text("task: [")
    with pytest.raises(RunFileError, match="config.yaml: not a valid fedsafe config"):
        open_run(tmp_path)
    lost = open_run(tmp_path / "nowhere", missing_ok=True)  # a report over moved runs says so
    assert not lost.exists and lost.config is None and lost.summary == {} and lost.metrics == []
    with pytest.raises(RunFileError, match="not a fedsafe run directory"):
        _ = lost.store


def test_a_damaged_record_is_refused_naming_it_and_how_to_recompute_it(tmp_path):
    _write_run(tmp_path / "run", _cfg())
    (tmp_path / "run" / "summary.json").write_text("{")
    run = open_run(tmp_path / "run")
    with pytest.raises(RunFileError, match=r"summary.json: not valid JSON.*fedsafe train --config"):
        run.read_records()


def test_open_run_for_writing_refuses_another_config_and_a_foreign_folder(tmp_path):
    cfg = _cfg()
    new = open_run(tmp_path / "new", config=cfg)  # new: nothing is written by opening
    assert new.config == cfg and new.store.config_hash == config_hash(cfg) and not (tmp_path / "new").exists()
    _write_run(tmp_path / "run", cfg)
    assert open_run(tmp_path / "run", config=cfg).store.config_hash == config_hash(cfg)
    with pytest.raises(ConfigError, match="holds a run with a different config"):
        open_run(tmp_path / "run", config=_cfg("seed=3"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(RunDirRefused, match="not empty and not a fedsafe run directory"):
        open_run(tmp_path / "mine", config=cfg)


def test_open_run_with_a_hash_keys_the_store_and_reads_nothing(tmp_path):
    run = open_run(tmp_path / "rec", config_hash="ab" * 32)
    assert run.exists and run.config is None and run.store.config_hash == "ab" * 32
