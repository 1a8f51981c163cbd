"""One self-contained HTML report from a run directory or a results directory: no network, no script.

* A **results directory** (what ``fedsafe reproduce`` or ``fedsafe demo`` wrote: ``<name>/<task>/manifest.json``
  and ``runs/``), or one reproduction's folder: for every reproduction its setting, tables (ours beside the
  papers'), figures (PNG embedded as base64), verdicts, and the attacker x target ASR matrices as heat-maps
  (coloured HTML tables); then the setup: the data report of each task, the model, profile and precision, and
  one row per training run with its defense, noise, the (epsilon, delta) the accountant gives and its cost.
* A **run directory** (``fedsafe train``): its setup, clean accuracy per round (a figure), and every attack
  evaluation found in ``RUN/attacks/`` (a table and a heat-map each).

Everything is read from the files the runs wrote; nothing is recomputed.

>>> # write_report("results", "report.html")
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..runs.atomic import write_text

__all__ = ["build_report", "find_manifests", "write_report"]

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1150px;color:#1b1f24;
background:#fff;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:36px}
h3{margin-top:22px}table{border-collapse:collapse;margin:8px 0 12px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}.note{color:#57606a;font-size:13px;margin:4px 0}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;margin-right:6px}
.quick{background:#fff1c2;color:#7a5400}.synthetic{background:#e6e0ff;color:#3d2a8a}
.verdict{margin:6px 0;padding:6px 10px;border-left:5px solid #999;background:#f8f9fa;font-size:14px}
.holds{border-color:#1a7f37}.does-not-hold{border-color:#cf222e}.partly{border-color:#bf8700}
.undetermined{border-color:#8c959f}.status{font-weight:700}.holds .status{color:#1a7f37}
.does-not-hold .status{color:#cf222e}.partly .status{color:#9a6700}.undetermined .status{color:#57606a}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #d0d7de}figcaption{font-size:13px;color:#57606a}
.heatmaps{display:flex;flex-wrap:wrap;gap:18px}.heatmap td{width:52px;text-align:center;font-size:12px}
.heatmap caption{font-size:12px;text-align:left;max-width:330px;padding-bottom:3px}
nav ul{columns:2;font-size:14px}details{margin:6px 0}summary{cursor:pointer;font-weight:600}
"""


# -- small helpers ----------------------------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _rich(text: str) -> str:
    """Escape, then render the two Markdown marks the outputs use: **bold** and `code`."""
    t = _e(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for v in row:
            s = str(v)
            num = bool(re.match(r"^[-+]?[0-9.]+(e[-+]?\d+)?%?( ± [0-9.]+)?$", s)) or s.endswith("%")
            cells.append(f'<td class="num">{_e(s)}</td>' if num else f"<td>{_e(s)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    c = f' class="{cls}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _png(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _png_bytes(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _colour(v: float) -> tuple[str, str]:
    """White (0) to dark red (1) background, and a readable text colour."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "#eeeeee", "#57606a"
    v = min(max(float(v), 0.0), 1.0)
    r, g, b = 255 - int(v * (255 - 165)), 255 - int(v * 255), 255 - int(v * 255)
    return f"#{r:02x}{g:02x}{b:02x}", "#ffffff" if v > 0.55 else "#1b1f24"


def _heatmap(title: str, matrix: Sequence[Sequence[float]], attackers: Sequence[int], metric: str = "ASR") -> str:
    """An attacker x target matrix as a coloured table (the attacker's own model framed)."""
    n_targets = len(matrix[0]) if matrix else 0
    head = "<th>attacker \\ target</th>" + "".join(f"<th>{j}</th>" for j in range(n_targets))
    rows = []
    for a, row in zip(attackers, matrix, strict=True):
        cells = []
        for j, v in enumerate(row):
            v = float("nan") if v is None else float(v)
            bg, fg = _colour(v)
            border = "border:2px solid #1b1f24;" if j == a else ""
            text = "n/a" if math.isnan(v) else f"{100 * v:.0f}%"
            cells.append(f'<td style="background:{bg};color:{fg};{border}">{text}</td>')
        rows.append(f"<tr><th>{_e(a)}</th>{''.join(cells)}</tr>")
    return (f'<table class="heatmap"><caption>{_e(metric)}: {_e(title)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _verdicts(verdicts: Sequence[dict[str, str]]) -> str:
    out = []
    for v in verdicts:
        status = v.get("status", "undetermined")
        paper = f"<br><span class=\"note\">Paper: {_e(v['paper'])}</span>" if v.get("paper") else ""
        out.append(f'<div class="verdict {_slug(status)}">{_e(v.get("claim", ""))}: <span class="status">'
                   f"{_e(status)}</span>. {_e(v.get('evidence', ''))}{paper}</div>")
    return "".join(out)


def _read(path: Path, loader=json.loads) -> Any:
    try:
        return loader(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _run_info(rd: Path) -> dict[str, Any]:
    return {"run_dir": rd, "config": _read(rd / "config.yaml", yaml.safe_load) or {},
            "summary": _read(rd / "summary.json") or {}, "privacy": _read(rd / "privacy_report.json") or {},
            "data_report": _read(rd / "data_report.json") or {}, "metrics": _read(rd / "metrics.json") or []}


def _num(v: Any, digits: int = 4) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a" if v is None else str(v)
    if math.isinf(f):
        return "inf"
    return f"{f:.{digits}g}"


def _pct(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(f) else f"{100 * f:.1f}%"


# -- setup ------------------------------------------------------------------------------------------------------


def _data_report(rep: dict[str, Any]) -> str:
    if not rep:
        return '<p class="note">No data report.</p>'
    parts = [f"<p><strong>{_e(rep.get('task'))}</strong>: {_e(rep.get('source'))}"
             + (' <span class="badge synthetic">synthetic: not real data</span>' if rep.get("synthetic") else "")
             + "</p>"]
    counts = rep.get("counts") or {}
    if counts:
        classes = sorted({c for per in counts.values() for c in per})
        parts.append("<p class=\"note\">Files read per source split and class:</p>" + _table(
            ["split", *classes], [[s, *[per.get(c, 0) for c in classes]] for s, per in counts.items()]))
    dup = rep.get("duplicates") or {}
    kept = rep.get("kept") or {}
    parts.append(f"<p>Duplicates removed: {_e(', '.join(f'{k}: {v}' for k, v in dup.items()) or 'none')}. "
                 f"Kept after de-duplication: {_e(', '.join(f'{k}: {v}' for k, v in kept.items()))} "
                 f"({sum(kept.values()) if kept else 0} images). Unreadable files: {len(rep.get('unreadable') or [])}."
                 "</p>")
    splits = rep.get("splits") or {}
    if splits:
        classes = sorted({c for per in splits.values() for c in per})
        parts.append("<p class=\"note\">Disjoint sets drawn by seed (global test, server, each client's attack/test "
                     "and training set):</p>" + _table(["set", *classes, "total"], [
                         [s, *[per.get(c, 0) for c in classes], sum(per.values())] for s, per in splits.items()]))
    for n in rep.get("notes") or []:
        parts.append(f'<p class="note">{_e(n)}</p>')
    pre = rep.get("preprocessing") or {}
    if pre:
        parts.append(f'<p class="note">Preprocessing: {_e(", ".join(f"{k} {v}" for k, v in pre.items()))}</p>')
    return "".join(parts)


def _model_line(info: dict[str, Any]) -> str:
    cfg, summ = info["config"], info["summary"]
    model, tr = summ.get("model") or {}, cfg.get("train") or {}
    macs = model.get("macs_per_image")
    return (f"Model {_e(model.get('name', (cfg.get('model') or {}).get('name')))} width "
            f"{_e(model.get('width', (cfg.get('model') or {}).get('width')))} on {_e(model.get('image_size'))}x"
            f"{_e(model.get('image_size'))}x{_e(model.get('channels'))} images, {_e(model.get('parameters'))} "
            f"parameters, {_num(macs / 1e6 if macs else None)} MMAC an image; profile {_e(cfg.get('profile'))}; "
            f"{_e(tr.get('rounds'))} rounds x {_e(tr.get('local_epochs'))} local epochs, {_e(tr.get('optimizer'))} "
            f"lr {_e(tr.get('lr'))}, batch {_e(tr.get('batch_size'))}; training precision "
            f"{_e(summ.get('precision', tr.get('precision')))}; torch {_e(summ.get('torch'))}, "
            f"{_e(summ.get('threads'))} threads, fedsafe {_e(summ.get('fedsafe_version'))}.")


def _epsilon(priv: dict[str, Any]) -> str:
    pld = priv.get("pld") or {}
    if not pld:
        return "n/a"
    return (f"{_num(pld.get('epsilon'))} (uplink {_num(pld.get('epsilon_uplink'))}, downlink "
            f"{_num(pld.get('epsilon_downlink'))})")


def _runs_table(runs: dict[Path, list[str]], infos: dict[Path, dict[str, Any]], root: Path | None) -> str:
    rows = []
    for rd, names in runs.items():
        info = infos[rd]
        cfg, summ, priv = info["config"], info["summary"], info["privacy"]
        fed, d = cfg.get("federation") or {}, cfg.get("defense") or {}
        cost = priv.get("defense_cost") or {}
        defense = d.get("name", "none") + (f" (f = {d.get('fraction')})" if d.get("name") in (
            "adversarial-training", "fed-safe") else "")
        name = str(rd.relative_to(root)) if root is not None and rd.is_relative_to(root) else str(rd)
        rows.append([", ".join(names), name, cfg.get("seed"), defense, _num(fed.get("downlink_noise")),
                     _num(fed.get("uplink_clip")) if fed.get("uplink_clip") else "none", _num(fed.get("uplink_noise")),
                     _epsilon(priv), priv.get("delta", "n/a"), _pct(summ.get("global_acc")),
                     _num((cost.get("server") or {}).get("passes"), 6), _num(summ.get("seconds"), 3)])
    return _table(["used by", "run directory", "seed", "defense", "s_D", "clip C", "s_U",
                   "epsilon (PLD; uplink, downlink)", "delta", "global acc", "server defense passes", "train s"], rows)


def _setup(runs: dict[Path, list[str]], root: Path | None) -> str:
    infos = {rd: _run_info(rd) for rd in runs}
    existing = {rd: i for rd, i in infos.items() if i["config"]}
    if not existing:
        return '<p class="note">The run directories are not here (moved or deleted): no setup to show.</p>'
    out = []
    by_task: dict[str, Path] = {}
    for rd, info in existing.items():
        by_task.setdefault((info["config"].get("task") or {}).get("name", "?"), rd)
    for task, rd in by_task.items():
        out.append(f"<h3>Data: {_e(task)}</h3>{_data_report(existing[rd]['data_report'])}")
    models = {}
    for rd, info in existing.items():
        models.setdefault(_model_line(info), []).append(rd)
    out.append("<h3>Model, profile and precision</h3>" + "".join(f"<p>{m}</p>" for m in models))
    out.append("<h3>Training runs, privacy and defense cost</h3><p class=\"note\">epsilon: what the run's noise "
               "really gives by the accountant (PLD, composed over the rounds; 'inf' without clipping or noise), at "
               "the delta shown; s_D downlink noise, s_U uplink noise, C uplink clip.</p>"
               + _runs_table({rd: runs[rd] for rd in existing}, existing, root))
    return "".join(out)


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
        m = _read(p)
        if isinstance(m, dict) and m.get("kind") == "fedsafe-reproduction":
            out.append((_ORDER.index(m.get("name")) if m.get("name") in _ORDER else len(_ORDER), m.get("task", ""), p))
    return [p for *_, p in sorted(out, key=lambda t: (t[0], t[1], str(t[2])))]


_ORDER = ("demo", "fedsafe-table1", "fedsafe-table2", "fedsafe-fig3", "crn-table1", "crn-table2", "crn-fig2",
          "crn-fig3")


def _reproduction(mpath: Path, m: dict[str, Any]) -> str:
    folder = mpath.parent
    badges = ('<span class="badge quick">QUICK: fewer rounds</span>' if m.get("quick") else "") + (
        '<span class="badge synthetic">synthetic task</span>' if m.get("synthetic") else "")
    parts = [f'<h2 id="{_slug(m["name"] + "-" + m["task"])}">{_e(m["title"])} — {_e(m["task"])}</h2>',
             f"<p>{badges}{_e(m.get('label', ''))}</p>", f'<p class="note">{_rich(m.get("setting", ""))}</p>']
    for t in m.get("tables", []):
        parts.append(f"<h3>{_e(t['title'])}</h3>" + _table(t["columns"], t["rows"]))
        parts += [f'<p class="note">{_rich(n)}</p>' for n in t.get("notes", [])]
    for f in m.get("figures", []):
        png = folder / f["png"]
        if png.is_file():
            parts.append(_png(png, f"{m['title']}: {f.get('caption', '')} ({m.get('label', '')})"))
    parts.append("<h3>Do the claims hold here?</h3>" + _verdicts(m.get("verdicts", [])))
    parts += [f'<p class="note">{_rich(n)}</p>' for n in m.get("notes", [])]
    maps = m.get("heatmaps", [])
    if maps:
        parts.append("<h3>Who fools whom: ASR per (attacker, target)</h3><p class=\"note\">Rows: the attacking "
                     "client (crafting on its own model and test set); columns: the model attacked; framed: the "
                     "attacker's own model.</p><div class=\"heatmaps\">"
                     + "".join(_heatmap(h["title"], h["matrix"], h["attackers"], h.get("metric", "ASR")) for h in maps)
                     + "</div>")
    files = m.get("files", {})
    parts.append(f'<p class="note">Files in {_e(folder)}: {_e(", ".join(files.values()))}.</p>')
    return "".join(parts)


def _results_report(path: Path, manifests: list[Path]) -> str:
    loaded = [(p, _read(p)) for p in manifests]
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
    nav = "".join(f'<li><a href="#{_slug(m["name"] + "-" + m["task"])}">{_e(m["title"])} — {_e(m["task"])}</a></li>'
                  for _, m in loaded)
    counts: dict[str, int] = {}
    for _, m in loaded:
        for v in m.get("verdicts", []):
            counts[v.get("status", "undetermined")] = counts.get(v.get("status", "undetermined"), 0) + 1
    overview = ", ".join(f"{k}: {v}" for k, v in counts.items())
    body = [
        f"<h1>fedsafe report</h1><p>{_badges(quick, synthetic)}From <code>{_e(path)}</code>; {len(loaded)} "
        f"reproduction(s); verdicts — {_e(overview or 'none')}. Generated {_e(time.strftime('%Y-%m-%d %H:%M'))} by "
        f"fedsafe {_e(__version__)}.</p>",
        f"<nav><h2>Contents</h2><ul>{nav}<li><a href=\"#setup\">Setup: data, model, runs, privacy</a></li></ul></nav>",
        *(_reproduction(p, m) for p, m in loaded),
        '<h2 id="setup">Setup: data, model, runs, privacy</h2>', _setup(runs, root),
    ]
    return _page("fedsafe report", body)


def _badges(quick: bool, synthetic: bool) -> str:
    return (('<span class="badge quick">QUICK: fewer rounds, not the papers\' setting</span>' if quick else "")
            + ('<span class="badge synthetic">synthetic data</span>' if synthetic else ""))


# -- a run directory -----------------------------------------------------------------------------------------------


def _accuracy_figure(metrics: list[dict[str, Any]], title: str) -> bytes | None:
    rows = [m for m in metrics if "global_acc" in m and not m.get("final")]
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..experiments.figures import png_bytes

    fig = Figure(figsize=(6.4, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs = [m["round"] for m in rows]
    ax.plot(xs, [100 * m["global_acc"] for m in rows], marker="o", label="global model (global test)")
    n = len(rows[0].get("client_received_acc") or [])
    for c in range(n):
        ax.plot(xs, [100 * m["client_received_acc"][c] for m in rows], linewidth=1, alpha=0.7,
                label=f"client {c} received copy (own test)")
    ax.set_xlabel("round")
    ax.set_ylabel("clean accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return png_bytes(fig)


def _run_report(rd: Path) -> str:
    info = _run_info(rd)
    cfg = info["config"]
    task = (cfg.get("task") or {}).get("name", "?")
    synthetic = bool(info["data_report"].get("synthetic"))
    body = [f"<h1>fedsafe run report: {_e(task)}</h1><p>{_badges(False, synthetic)}Run directory <code>{_e(rd)}</code>"
            f"{'' if info['summary'] else ' (not complete: no summary.json yet)'}. Generated "
            f"{_e(time.strftime('%Y-%m-%d %H:%M'))} by fedsafe {_e(__version__)}.</p>",
            '<nav><h2>Contents</h2><ul><li><a href="#attacks">Attack evaluations</a></li>'
            '<li><a href="#setup">Setup: data, model, privacy</a></li></ul></nav>']
    png = _accuracy_figure(info["metrics"], f"{task}: clean accuracy per round")
    if png is not None:
        body.append(_png_bytes(png, "clean accuracy per round"))
    evals = []
    for p in sorted((rd / "attacks").glob("*.json")) if (rd / "attacks").is_dir() else []:
        rec = _read(p)
        if isinstance(rec, dict) and "summary" in rec and "matrices" in rec:
            evals.append(rec)
    body.append('<h2 id="attacks">Attack evaluations</h2>')
    if not evals:
        body.append('<p class="note">No attack evaluation in this run yet (run <code>fedsafe attack RUN_DIR</code>).'
                    "</p>")
    else:
        rows = []
        for r in evals:
            a, s = r["attack"], r["summary"]
            rows.append([r["label"], a.get("eps"), a.get("alpha") if a.get("alpha") is not None else "—",
                         a.get("start"), a.get("seed"), _pct(s.get("asr_self")), _pct(s.get("asr_avg_benign")),
                         _pct(s.get("aasr")), _pct(s.get("aetr")), _pct(s.get("clean_acc")),
                         _num(r.get("attack_seconds_per_batch"), 3), r.get("precision")])
        body.append(_table(["attack", "eps", "alpha", "start", "seed", "ASR self", "ASR benign", "AASR", "AETR",
                            "clean acc", "s/batch", "precision"], rows))
        warnings = evals[0].get("sanity_warnings") or []
        if warnings:
            body.append("<p class=\"note\">Sanity-check warnings: " + _e("; ".join(warnings)) + "</p>")
        body.append('<div class="heatmaps">' + "".join(
            _heatmap(f"{r['label']}, eps {r['attack'].get('eps')}, start {r['attack'].get('start')}",
                     r["matrices"]["asr"], r["matrices"]["attackers"]) for r in evals[:40]) + "</div>")
    body += ['<h2 id="setup">Setup: data, model, privacy</h2>', _setup({rd: [rd.name]}, None)]
    return _page(f"fedsafe run report: {task}", body)


# -- entry points -----------------------------------------------------------------------------------------------------


def _page(title: str, body: Sequence[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f"<body>{''.join(body)}</body></html>\n")


def build_report(path: str | Path) -> str:
    """The HTML of the report on ``path``: a results directory, one reproduction's folder, or a run directory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such directory")
    manifests = find_manifests(path)
    if manifests:
        return _results_report(path, manifests)
    if (path / "config.yaml").is_file():
        return _run_report(path)
    raise FileNotFoundError(f"{path}: neither a results directory (<name>/<task>/manifest.json, written by fedsafe "
                            "reproduce or demo) nor a run directory (config.yaml)")


def write_report(path: str | Path, out: str | Path) -> Path:
    """Write :func:`build_report` of ``path`` to ``out`` (atomically); returns ``out``."""
    out = Path(out)
    write_text(out, build_report(path))
    return out
