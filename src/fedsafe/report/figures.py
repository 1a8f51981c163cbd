"""Figures of the reproductions in the papers' form: ASR against a swept parameter (step alpha, budget eps,
fraction f), one panel for the benign clients and one for the adversary, and grouped bars for the tables.

Every function takes a tidy, aggregated :class:`pandas.DataFrame` (columns ``<metric>_mean``, ``<metric>_std``
over seeds) and returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state, no display:
rendered by the Agg canvas), which :func:`save_figure` writes as PNG and SVG.

>>> agg = pd.DataFrame({"alpha": [0.001, 0.01], "curve": ["PGD-20"] * 2, "asr_avg_benign_mean": [0.2, 0.4]})
>>> fig = line_panels(agg, x="alpha", series="curve", panels=[("asr_avg_benign", "benign clients")],
...                   xlabel="step size alpha", title="ASR vs alpha")
>>> png_bytes(fig)[:4]
b'\\x89PNG'
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..runs.atomic import write_bytes

__all__ = ["accuracy_curve", "bars", "heatmap", "line_panels", "png_bytes", "save_figure", "svg_text"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _wrap(text: str, width: int = 70) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _new_figure(ncols: int, *, height: float = 3.6, width: float = 4.6) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def line_panels(data: pd.DataFrame, *, x: str, series: str, panels: Sequence[tuple[str, str]], xlabel: str,
                title: str, ylabel: str = "ASR", percent: bool = True, logx: bool = False,
                x_as_percent: bool = False, xticklabels: Mapping[float, str] | None = None) -> Figure:
    """One panel per ``(metric, panel title)``: ``<metric>_mean`` against ``x``, one line per value of
    ``series``, with error bars of one standard deviation when ``<metric>_std`` is positive (several seeds).
    ``xticklabels``: a label per tick position (e.g. the real image counts behind a fraction), else the value."""
    fig, axes = _new_figure(len(panels))
    scale = 100.0 if percent else 1.0
    for ax, (metric, panel_title) in zip(axes, panels, strict=True):
        for k, (name, grp) in enumerate(data.groupby(series, sort=False)):
            grp = grp.sort_values(x)
            xs = grp[x].to_numpy(dtype=float) * (100.0 if x_as_percent else 1.0)
            ys = grp[f"{metric}_mean"].to_numpy(dtype=float) * scale
            std = grp.get(f"{metric}_std")
            err = None if std is None else np.nan_to_num(std.to_numpy(dtype=float)) * scale
            ax.errorbar(xs, ys, yerr=err if err is not None and np.any(err > 0) else None, label=str(name),
                        marker=_MARKERS[k % len(_MARKERS)], capsize=3, linewidth=1.5, markersize=5)
        if logx:
            ax.set_xscale("log")
        ticks = sorted(data[x].unique() * (100.0 if x_as_percent else 1.0))
        ax.set_xticks(ticks)
        ax.set_xticklabels([_tick_label(v, xticklabels) for v in ticks], rotation=0, fontsize=7 if xticklabels else 8)
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{ylabel} (%)" if percent else ylabel)
        ax.set_ylim(-2 if percent else -0.02, 102 if percent else 1.02)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(_wrap(title, 110), fontsize=10)
    return fig


def _tick_label(v: float, labels: Mapping[float, str] | None) -> str:
    if labels:
        for k, text in labels.items():
            if np.isclose(k, v):
                return text
    return f"{v:g}"


def bars(data: pd.DataFrame, *, category: str, series: str, metric: str, title: str, ylabel: str,
         percent: bool = True, paper: str | None = None) -> Figure:
    """Grouped bars of ``<metric>_mean`` (error bars: ``<metric>_std``) per ``category``, one bar per ``series``;
    with ``paper`` (a column of the papers' values) a hollow bar beside ours where the paper has a number."""
    fig, (ax,) = _new_figure(1, width=6.4)
    cats = list(dict.fromkeys(data[category]))
    names = list(dict.fromkeys(data[series]))
    n_bars = len(names) * (2 if paper else 1)
    width = 0.8 / max(n_bars, 1)
    scale = 100.0 if percent else 1.0
    pos = np.arange(len(cats), dtype=float)
    k = 0
    for name in names:
        grp = data[data[series] == name].set_index(category).reindex(cats)
        ys = grp[f"{metric}_mean"].to_numpy(dtype=float) * scale
        std = grp.get(f"{metric}_std")
        err = None if std is None else np.nan_to_num(std.to_numpy(dtype=float)) * scale
        ax.bar(pos + (k - (n_bars - 1) / 2) * width, ys, width, label=f"{name} (ours)",
               yerr=err if err is not None and np.any(err > 0) else None, capsize=3)
        k += 1
        if paper:
            pv = grp[paper].to_numpy(dtype=float) * scale
            ax.bar(pos + (k - (n_bars - 1) / 2) * width, pv, width, label=f"{name} (paper)", fill=False,
                   hatch="//", edgecolor=ax.patches[-1].get_facecolor())
            k += 1
    ax.set_xticks(pos)
    ax.set_xticklabels([str(c) for c in cats], fontsize=8)
    ax.set_ylabel(f"{ylabel} (%)" if percent else ylabel)
    ax.set_ylim(0, 102 if percent else 1.02)
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def heatmap(matrix: np.ndarray, *, title: str, row_label: str = "attacker", col_label: str = "target",
            vmin: float = 0.0, vmax: float = 1.0) -> Figure:
    """An attacker x target matrix (rates in [0, 1]) with the values printed in the cells (NaN: "n/a")."""
    m = np.asarray(matrix, dtype=float)
    fig = Figure(figsize=(1.2 + 0.9 * m.shape[1], 1.0 + 0.8 * m.shape[0]), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(m), cmap="Reds", vmin=vmin, vmax=vmax)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, "n/a" if np.isnan(v) else f"{100 * v:.0f}%", ha="center", va="center", fontsize=8,
                color="white" if not np.isnan(v) and v > 0.6 * vmax else "black")
    ax.set_xticks(range(m.shape[1]), [str(j) for j in range(m.shape[1])])
    ax.set_yticks(range(m.shape[0]), [str(i) for i in range(m.shape[0])])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(_wrap(title, 40), fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def accuracy_curve(metrics: Sequence[dict], title: str) -> Figure | None:
    """Clean accuracy per round of a run (its ``metrics.json`` rows): the global model on the global test set and
    each client's received copy on its own test set; None when no round was evaluated."""
    rows = [m for m in metrics if "global_acc" in m and not m.get("final")]
    if not rows:
        return None
    fig = Figure(figsize=(6.4, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs = [m["round"] for m in rows]
    ax.plot(xs, [100 * m["global_acc"] for m in rows], marker="o", label="global model (global test)")
    for c in range(len(rows[0].get("client_received_acc") or [])):
        ax.plot(xs, [100 * m["client_received_acc"][c] for m in rows], linewidth=1, alpha=0.7,
                label=f"client {c} received copy (own test)")
    ax.set_xlabel("round")
    ax.set_ylabel("clean accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return fig


def png_bytes(fig: Figure, *, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def svg_text(fig: Figure) -> str:
    """The figure as SVG, the same bytes for the same figure: no date in its metadata, and its element ids hashed
    with a fixed salt (matplotlib's default salt is random)."""
    buf = io.StringIO()
    with rc_context({"svg.hashsalt": "fedsafe"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def save_figure(fig: Figure, base: str | Path) -> tuple[Path, Path]:
    """Write ``base.png`` and ``base.svg`` (atomically); returns their paths."""
    base = Path(base)
    png, svg = base.with_suffix(".png"), base.with_suffix(".svg")
    write_bytes(png, png_bytes(fig))
    write_bytes(svg, svg_text(fig).encode())
    return png, svg
