"""What every builder shares: averaging over seeds, the cells of a table (ours, with the spread over seeds, beside
the paper's), the papers' names of our tasks, and the label of a run.

>>> fmt_frac(0.123, 0.01), fmt_seconds(0.21), fmt_num(float("inf"))
('0.12 ± 0.01', '0.210', 'inf')
>>> dataset("meningioma", "fed-safe"), dataset("breastmnist", "crn") is None
('MRI', True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from ..verdicts import fmt_pct
from .base import BuildInput

__all__ = ["METRICS", "aggregate", "cell", "dataset", "fmt_frac", "fmt_num", "fmt_pct", "fmt_seconds",
           "no_paper_note", "paper_text", "paper_value", "run_label", "seed_std"]

METRICS = ("asr_self", "asr_avg_benign", "aasr", "aetr", "asr_self_literal", "asr_avg_benign_literal",
           "aasr_literal", "clean_acc", "attack_acc", "seconds_per_batch", "global_acc", "client_acc")
"""The numbers of a summary row that are averaged over seeds."""


def aggregate(summary: pd.DataFrame, by: Sequence[str], metrics: Iterable[str] = METRICS) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one seed) and number of seeds of each metric per group."""
    metrics = [m for m in metrics if m in summary.columns]
    g = summary.groupby(list(by), sort=False, dropna=False)
    out = g[metrics].mean().add_suffix("_mean")
    out = out.join(g[metrics].std(ddof=1).add_suffix("_std"))
    out["seeds"] = g.size()
    return out.reset_index()


def seed_std(s: pd.Series) -> float:
    """The standard deviation over seeds (ddof 1), NaN for one seed."""
    return float(s.std(ddof=1)) if len(s) > 1 else math.nan


def cell(row: pd.Series | dict, metric: str, fmt: Callable[[float, float], str] = fmt_pct) -> str:
    """``row``'s ``<metric>_mean`` (with its ``_std`` over seeds) as a table cell."""
    return fmt(float(row[f"{metric}_mean"]), float(row.get(f"{metric}_std", math.nan)))


def fmt_frac(x: float, std: float = math.nan) -> str:
    """The Fed-Safe paper's form: 0.12 (with "± 0.01" over seeds)."""
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.2f}" + (f" ± {std:.2f}" if not math.isnan(std) and std > 0 else "")


def fmt_seconds(x: float, std: float = math.nan) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.3f}" + (f" ± {std:.3f}" if not math.isnan(std) and std > 0 else "")


def fmt_num(v: Any, digits: int = 4) -> str:
    """A number as the outputs print it (4 significant digits, "inf"); anything else as its text."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "inf" if math.isinf(f) else f"{f:.{digits}g}"


def paper_text(number: Any) -> str:
    """A paper's cell as printed (a PaperNumber's text), or "—" where the paper has none."""
    return "—" if number is None else str(number.text)


def paper_value(value: float | None, fmt: Callable[[float, float], str] = fmt_pct) -> str:
    return "—" if value is None else fmt(value, math.nan)


_DATASETS = {"crn": {"meningioma": "Meningioma", "glioma": "Glioma", "pcam": "Pathology"},
             "fed-safe": {"meningioma": "MRI", "glioma": "Glioma", "pcam": "Pathology"}}


def dataset(task: str, paper: str) -> str | None:
    """The papers' name of a task (None: the paper did not use it)."""
    return _DATASETS[paper].get(task)


def no_paper_note(task: str, paper: str, tables: str) -> tuple[str, ...]:
    if dataset(task, paper) is not None:
        return ()
    return (f"The paper reports no {tables} numbers for {task}: the paper columns are empty (—).",)


def run_label(inp: BuildInput) -> str:
    """"meningioma, profile cpu, 3 seeds, QUICK": what the numbers of a figure come from."""
    syn = " (not real data)" if inp.task == "synthetic" else ""
    seeds = f", {inp.options.seeds} seeds" if inp.options.seeds > 1 else ""
    return f"{inp.task}{syn}, profile {inp.options.profile}{seeds}" + (", QUICK" if inp.quick else "")
