"""The pieces of the HTML report: its style sheet, escaping, tables, embedded figures, heat-maps of attacker x
target matrices, verdict boxes and the page. Pure functions of their inputs (strings in, HTML out)."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..jsonsafe import json_pct as pct

__all__ = ["STYLE", "badges", "colour", "esc", "heatmap", "num", "page", "pct", "png_file", "png_html", "rich", "slug",
           "table", "verdicts"]

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1150px;color:#1b1f24;
background:#fff;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:36px}
h3{margin-top:22px}table{border-collapse:collapse;margin:8px 0 12px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}.note{color:#57606a;font-size:13px;margin:4px 0}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;margin-right:6px}
.quick{background:#fff1c2;color:#7a5400}.synthetic{background:#e6e0ff;color:#3d2a8a}
.verdict{margin:6px 0;padding:6px 10px;border-left:5px solid #999;background:#f8f9fa;font-size:14px}
.holds{border-color:#1a7f37}.does-not-hold{border-color:#cf222e}.partly-holds{border-color:#4d9e5a}.partly-does-not-hold{border-color:#d9705f}.mixed{border-color:#bf8700}
.undetermined{border-color:#8c959f}.status{font-weight:700}.holds .status{color:#1a7f37}
.does-not-hold .status{color:#cf222e}.mixed .status{color:#9a6700}.undetermined .status{color:#57606a}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #d0d7de}figcaption{font-size:13px;color:#57606a}
.heatmaps{display:flex;flex-wrap:wrap;gap:18px}.heatmap td{width:52px;text-align:center;font-size:12px}
.heatmap caption{font-size:12px;text-align:left;max-width:330px;padding-bottom:3px}
nav ul{columns:2;font-size:14px}details{margin:6px 0}summary{cursor:pointer;font-weight:600}
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def rich(text: str) -> str:
    """Escape, then render the two Markdown marks the outputs use: **bold** and `code`."""
    t = esc(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "") -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for v in row:
            s = str(v)
            num = bool(re.match(r"^[-+]?[0-9.]+(e[-+]?\d+)?%?( ± [0-9.]+)?$", s)) or s.endswith("%")
            cells.append(f'<td class="num">{esc(s)}</td>' if num else f"<td>{esc(s)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    c = f' class="{cls}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def png_file(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def png_html(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def colour(v: float) -> tuple[str, str]:
    """White (0) to dark red (1) background, and a readable text colour."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "#eeeeee", "#57606a"
    v = min(max(float(v), 0.0), 1.0)
    r, g, b = 255 - int(v * (255 - 165)), 255 - int(v * 255), 255 - int(v * 255)
    return f"#{r:02x}{g:02x}{b:02x}", "#ffffff" if v > 0.55 else "#1b1f24"


def heatmap(title: str, matrix: Sequence[Sequence[float]], attackers: Sequence[int], metric: str = "ASR") -> str:
    """An attacker x target matrix as a coloured table (the attacker's own model framed)."""
    n_targets = len(matrix[0]) if matrix else 0
    head = "<th>attacker \\ target</th>" + "".join(f"<th>{j}</th>" for j in range(n_targets))
    rows = []
    for a, row in zip(attackers, matrix, strict=True):
        cells = []
        for j, v in enumerate(row):
            v = float("nan") if v is None else float(v)
            bg, fg = colour(v)
            border = "border:2px solid #1b1f24;" if j == a else ""
            text = "n/a" if math.isnan(v) else f"{100 * v:.0f}%"
            cells.append(f'<td style="background:{bg};color:{fg};{border}">{text}</td>')
        rows.append(f"<tr><th>{esc(a)}</th>{''.join(cells)}</tr>")
    return (f'<table class="heatmap"><caption>{esc(metric)}: {esc(title)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def verdicts(items: Sequence[dict[str, str]]) -> str:
    """Each verdict (a ``Verdict.to_dict()``) as a box coloured by its status."""
    out = []
    for v in items:
        status = v.get("status", "undetermined")
        paper = f"<br><span class=\"note\">Paper: {esc(v['paper'])}</span>" if v.get("paper") else ""
        css = slug(status.removeprefix("indicative: "))
        out.append(f'<div class="verdict {css}">{esc(v.get("claim", ""))}: <span class="status">'
                   f"{esc(status)}</span>. {esc(v.get('evidence', ''))}{paper}{_points(v.get('points') or [])}</div>")
    return "".join(out)


def _points(points: Sequence[dict[str, Any]]) -> str:
    """A verdict's points in numbers (``Verdict.to_dict()["points"]``), folded: one row a point, in the claim's
    units (a share as a fraction, seconds, passes)."""
    if not points:
        return ""
    rows = [[p.get("where", ""), p.get("outcome", ""), p.get("n", 0), " ".join(map(str, p.get("seeds") or [])),
             num(p.get("ours"), 3), num(p.get("other"), 3), num(p.get("difference"), 3),
             f"{num(p.get('ci_low'), 3)} to {num(p.get('ci_high'), 3)}", num(p.get("p"), 2), num(p.get("p_holm"), 2)]
            for p in points]
    cols = ["point", "outcome", "n", "matched seeds", "ours", "other", "difference", "95% CI", "p", "Holm p"]
    return f"<details><summary>{len(points)} point(s) in numbers</summary>{table(cols, rows)}</details>"


def num(v: Any, digits: int = 4) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a" if v is None else str(v)
    if math.isinf(f):
        return "inf"
    return f"{f:.{digits}g}"


def page(title: str, body: Sequence[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>{''.join(body)}</body></html>\n")


def badges(quick: bool, synthetic: bool) -> str:
    return (('<span class="badge quick">QUICK: fewer rounds, not the papers\' setting</span>' if quick else "")
            + ('<span class="badge synthetic">synthetic data</span>' if synthetic else ""))
