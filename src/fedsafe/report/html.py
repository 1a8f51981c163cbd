"""One self-contained HTML report from a run directory or a results directory: no network, no script.

* A **results directory** (what ``fedsafe reproduce`` or ``fedsafe demo`` wrote: ``<name>/<task>/manifest.json``
  and ``runs/``), or one reproduction's folder: for every reproduction its setting, tables (ours beside the
  papers'), figures (PNG embedded as base64), verdicts, and the attacker x target ASR matrices as heat-maps
  (coloured HTML tables); then the setup: the data report of each task, the model, profile and precision, and
  one row per training run with its defense, noise, the (epsilon, delta) the accountant gives and its cost.
* A **run directory** (``fedsafe train``): its setup, clean accuracy per round (a figure), and every attack
  evaluation found in ``RUN/attacks/`` (a table and a heat-map each).

Everything is read from the files the runs wrote (a run directory through its store:
:func:`fedsafe.runs.open_run`; attack evaluations: :mod:`fedsafe.evaluation.results`); nothing is recomputed.
The noise shown for a run is the noise it used (its privacy report), calibrated or hand-set.
In use: ``write_report("results", "report.html")``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..evaluation.results import attack_records
from ..runs.atomic import write_text
from ..runs.layout import CONFIG, SUMMARY, RunLayout
from ..runs.run import open_run
from .elements import badges, esc, heatmap, num, page, pct, png_file, png_html, rich, slug, table, verdicts
from .figures import accuracy_curve, png_bytes
from .setup import setup_html

__all__ = ["build_report", "find_manifests", "write_report"]


def _read_manifest(path: Path) -> Any:
    """A reproduction's manifest (a results-directory file, not a run's), or None when unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- a results directory ------------------------------------------------------------------------------------------


def find_manifests(path: str | Path) -> list[Path]:
    """The reproduction manifests at or under ``path`` (not inside run directories), sorted."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        cands = [path / "manifest.json"]
    else:
        cands = sorted(p for p in path.rglob("manifest.json") if "runs" not in p.relative_to(path).parts[:-1])
    out = []
    for p in cands:
        m = _read_manifest(p)
        if isinstance(m, dict) and m.get("kind") == "fedsafe-reproduction":
            out.append((_ORDER.index(m.get("name")) if m.get("name") in _ORDER else len(_ORDER), m.get("task", ""), p))
    return [p for *_, p in sorted(out, key=lambda t: (t[0], t[1], str(t[2])))]


_ORDER = ("demo", "fedsafe-table1", "fedsafe-table2", "fedsafe-fig3", "crn-table1", "crn-table2", "crn-fig2",
          "crn-fig3")


def _reproduction(mpath: Path, m: dict[str, Any]) -> str:
    folder = mpath.parent
    marks = ('<span class="badge quick">QUICK: fewer rounds</span>' if m.get("quick") else "") + (
        '<span class="badge synthetic">synthetic task</span>' if m.get("synthetic") else "")
    parts = [f'<h2 id="{slug(m["name"] + "-" + m["task"])}">{esc(m["title"])} — {esc(m["task"])}</h2>',
             f"<p>{marks}{esc(m.get('label', ''))}</p>", f'<p class="note">{rich(m.get("setting", ""))}</p>']
    for t in m.get("tables", []):
        parts.append(f"<h3>{esc(t['title'])}</h3>" + table(t["columns"], t["rows"]))
        parts += [f'<p class="note">{rich(n)}</p>' for n in t.get("notes", [])]
    for f in m.get("figures", []):
        png = folder / f["png"]
        if png.is_file():
            parts.append(png_file(png, f"{m['title']}: {f.get('caption', '')} ({m.get('label', '')})"))
    parts.append("<h3>Do the claims hold here?</h3>" + verdicts(m.get("verdicts", [])))
    if m.get("rules"):  # older manifests carry no rules
        parts.append(f'<p class="note">{esc(m["rules"])}</p>')
    parts += [f'<p class="note">{rich(n)}</p>' for n in m.get("notes", [])]
    maps = m.get("heatmaps", [])
    if maps:
        parts.append("<h3>Who fools whom: ASR per (attacker, target)</h3><p class=\"note\">Rows: the attacking "
                     "client (crafting on its own model and test set); columns: the model attacked; framed: the "
                     "attacker's own model.</p><div class=\"heatmaps\">"
                     + "".join(heatmap(h["title"], h["matrix"], h["attackers"], h.get("metric", "ASR")) for h in maps)
                     + "</div>")
    files = m.get("files", {})
    parts.append(f'<p class="note">Files in {esc(folder)}: {esc(", ".join(files.values()))}.</p>')
    return "".join(parts)


def _results_report(path: Path, manifests: list[Path]) -> str:
    loaded = [(p, _read_manifest(p)) for p in manifests]
    runs: dict[Path, list[str]] = {}
    roots = set()
    for p, m in loaded:
        root = p.parents[2]
        roots.add(root)
        for name, rel in (m.get("runs") or {}).items():
            rd = Path(rel) if Path(rel).is_absolute() else root / rel
            runs.setdefault(rd, []).append(f"{m['name']}/{name}")
    root = next(iter(roots)) if len(roots) == 1 else None
    quick = any(m.get("quick") for _, m in loaded)
    synthetic = any(m.get("synthetic") for _, m in loaded)
    nav = "".join(f'<li><a href="#{slug(m["name"] + "-" + m["task"])}">{esc(m["title"])} — {esc(m["task"])}</a></li>'
                  for _, m in loaded)
    counts: dict[str, int] = {}
    for _, m in loaded:
        for v in m.get("verdicts", []):
            counts[v.get("status", "undetermined")] = counts.get(v.get("status", "undetermined"), 0) + 1
    overview = ", ".join(f"{k}: {v}" for k, v in counts.items())
    body = [
        f"<h1>fedsafe report</h1><p>{badges(quick, synthetic)}From <code>{esc(path)}</code>; {len(loaded)} "
        f"reproduction(s); verdicts — {esc(overview or 'none')}. Generated {esc(time.strftime('%Y-%m-%d %H:%M'))} by "
        f"fedsafe {esc(__version__)}.</p>",
        f"<nav><h2>Contents</h2><ul>{nav}<li><a href=\"#setup\">Setup: data, model, runs, privacy</a></li></ul></nav>",
        *(_reproduction(p, m) for p, m in loaded),
        '<h2 id="setup">Setup: data, model, runs, privacy</h2>', setup_html(runs, root),
    ]
    return page("fedsafe report", body)


# -- a run directory -----------------------------------------------------------------------------------------------


def _run_report(rd: Path) -> str:
    info = open_run(rd, missing_ok=True).read_records()
    task = info.config.task.name if info.config is not None else "?"
    synthetic = bool(info.data_report.get("synthetic"))
    body = [f"<h1>fedsafe run report: {esc(task)}</h1><p>{badges(False, synthetic)}Run directory <code>{esc(rd)}</code>"
            f"{'' if info.complete else f' (not complete: no {SUMMARY} yet)'}. Generated "
            f"{esc(time.strftime('%Y-%m-%d %H:%M'))} by fedsafe {esc(__version__)}.</p>",
            '<nav><h2>Contents</h2><ul><li><a href="#attacks">Attack evaluations</a></li>'
            '<li><a href="#setup">Setup: data, model, privacy</a></li></ul></nav>']
    fig = accuracy_curve(info.metrics, f"{task}: clean accuracy per round")
    if fig is not None:
        body.append(png_html(png_bytes(fig), "clean accuracy per round"))
    evals = attack_records(rd)
    body.append('<h2 id="attacks">Attack evaluations</h2>')
    if not evals:
        body.append('<p class="note">No attack evaluation in this run yet (run <code>fedsafe attack RUN_DIR</code>).'
                    "</p>")
    else:
        rows = []
        for r in evals:
            a, s = r["attack"], r["summary"]
            rows.append([r["label"], a.get("eps"), a.get("alpha") if a.get("alpha") is not None else "—",
                         a.get("start"), a.get("seed"), pct(s.get("asr_self")), pct(s.get("asr_avg_benign")),
                         pct(s.get("aasr")), pct(s.get("aetr")), pct(s.get("clean_acc")),
                         num(r.get("attack_seconds_per_batch"), 3), r.get("precision")])
        body.append(table(["attack", "eps", "alpha", "start", "seed", "ASR self", "ASR benign", "AASR", "AETR",
                           "clean acc", "s/batch", "precision"], rows))
        warnings = evals[0].get("sanity_warnings") or []
        if warnings:
            body.append("<p class=\"note\">Sanity-check warnings: " + esc("; ".join(warnings)) + "</p>")
        body.append('<div class="heatmaps">' + "".join(
            heatmap(f"{r['label']}, eps {r['attack'].get('eps')}, start {r['attack'].get('start')}",
                    r["matrices"]["asr"], r["matrices"]["attackers"]) for r in evals[:40]) + "</div>")
    body += ['<h2 id="setup">Setup: data, model, privacy</h2>', setup_html({rd: [rd.name]}, None)]
    return page(f"fedsafe run report: {task}", body)


# -- entry points -----------------------------------------------------------------------------------------------------


def build_report(path: str | Path) -> str:
    """The HTML of the report on ``path``: a results directory, one reproduction's folder, or a run directory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such directory")
    manifests = find_manifests(path)
    if manifests:
        return _results_report(path, manifests)
    if RunLayout(path).config.is_file():
        return _run_report(path)
    raise FileNotFoundError(f"{path}: neither a results directory (<name>/<task>/manifest.json, written by fedsafe "
                            f"reproduce or demo) nor a run directory ({CONFIG})")


def write_report(path: str | Path, out: str | Path) -> Path:
    """Write :func:`build_report` of ``path`` to ``out`` (atomically); returns ``out``."""
    out = Path(out)
    write_text(out, build_report(path))
    return out
