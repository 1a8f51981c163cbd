"""What every builder shares: averaging over seeds, the cells of a table (ours, with the spread over seeds, beside
the paper's), the comparisons a verdict is made of, the runs that did not learn (flagged in the tables, left out
of the verdicts: SPEC 11), the real adaptation counts behind a fraction f, the papers' names of our tasks, and the
label of a run.

>>> fmt_frac(0.123, 0.01), fmt_seconds(0.21), fmt_num(float("inf"))
('0.12 ± 0.01', '0.210', 'inf')
>>> dataset("meningioma", "fed-safe"), dataset("breastmnist", "crn") is None
('MRI', True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from ...defenses.adaptation import adaptation_counts, fraction_label
from ..runinfo import RunInfo
from ..verdicts import Comparison, fmt_pct
from .base import BuildInput

__all__ = ["METRICS", "NOT_LEARNED_MARK", "aggregate", "attack_means", "cell", "comparison", "dataset", "fmt_frac",
           "fmt_num", "fmt_pct", "fmt_seconds", "fraction_text", "learned_only", "learned_rows", "left_out", "marks",
           "no_paper_note", "not_learned", "not_learned_note", "paper_dataset", "paper_text", "paper_value",
           "run_label", "seed_std", "self_avg"]

METRICS = ("asr_self", "asr_avg_benign", "aasr", "aetr", "asr_self_literal", "asr_avg_benign_literal",
           "aasr_literal", "clean_acc", "attack_acc", "seconds_per_batch", "global_acc", "client_acc")
"""The numbers of a summary row that are averaged over seeds."""


def aggregate(summary: pd.DataFrame, by: Sequence[str], metrics: Iterable[str] = METRICS) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one seed) and number of seeds of each metric per group, and the
    per-seed values (``<metric>_by_seed``: {seed: value}) that paired comparisons need."""
    metrics = [m for m in metrics if m in summary.columns]
    g = summary.groupby(list(by), sort=False, dropna=False)
    out = g[metrics].mean().add_suffix("_mean")
    out = out.join(g[metrics].std(ddof=1).add_suffix("_std"))
    out["seeds"] = g.size()
    if "seed" in summary.columns:
        frames = [d for _, d in g]  # in the order of ``out``'s index (sort=False: first appearance)
        for m in metrics:
            out[f"{m}_by_seed"] = pd.Series([{int(k): _number(v) for k, v in zip(d["seed"], d[m], strict=True)}
                                             for d in frames], index=out.index, dtype=object)
    return out.reset_index()


def _number(v: Any) -> float:
    """A metric value as a float; NaN for a missing one (None: JSON's null)."""
    return math.nan if v is None else float(v)


def paired_spread(a: Mapping[str, Any], b: Mapping[str, Any], metric: str) -> tuple[float, int]:
    """(std over seeds of the per-seed differences a - b, number of seeds both have); (NaN, 0) when the rows hold no
    per-seed values (ddof 1: NaN for one common seed)."""
    sa, sb = a.get(f"{metric}_by_seed"), b.get(f"{metric}_by_seed")
    if not isinstance(sa, dict) or not isinstance(sb, dict):
        return math.nan, 0
    common = sorted(set(sa) & set(sb))
    d = [sa[k] - sb[k] for k in common if not (math.isnan(sa[k]) or math.isnan(sb[k]))]
    return (float(pd.Series(d).std(ddof=1)) if len(d) > 1 else math.nan), len(d)


def compare_rows(where: str, a: Mapping[str, Any], b: Mapping[str, Any], metric: str) -> Comparison:
    """The :class:`Comparison` of ``metric`` between two aggregated rows: means, stds, and the paired spread over
    the seeds both rows have (else the fewer seeds of the two)."""
    spread, n = paired_spread(a, b, metric)
    seeds = n if n else int(min(a.get("seeds", 1), b.get("seeds", 1)))
    return Comparison(where, float(a[f"{metric}_mean"]), float(b[f"{metric}_mean"]),
                      float(a.get(f"{metric}_std", math.nan)), float(b.get(f"{metric}_std", math.nan)), seeds,
                      diff_std=spread)


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


def paper_dataset(inp: BuildInput, paper: str) -> str | None:
    """The paper's dataset a builder compares with: the one asked for (``inp.paper_dataset``), else the task's."""
    return inp.paper_dataset or dataset(inp.task, paper)


def no_paper_note(inp: BuildInput, paper: str, tables: str) -> tuple[str, ...]:
    if paper_dataset(inp, paper) is not None:
        return ()
    return (f"The paper reports no {tables} numbers for {inp.task}: the paper columns are empty (—).",)


def run_label(inp: BuildInput) -> str:
    """"meningioma, profile cpu, 3 seeds, QUICK": what the numbers of a figure come from."""
    syn = " (not real data)" if inp.task == "synthetic" else ""
    seeds = f", {inp.options.seeds} seeds" if inp.options.seeds > 1 else ""
    return f"{inp.task}{syn}, profile {inp.options.profile}{seeds}" + (", QUICK" if inp.quick else "")


# -- comparisons, runs that did not learn, adaptation counts -------------------------------------------------------

NOT_LEARNED_MARK = " †"
"""Appended to a table cell whose run (in some seed) did not learn; :func:`not_learned_note` explains it."""


def self_avg(idx: Mapping[Any, Mapping[str, Any]], key: Any, mark: str = "",
             fmt: Callable[[float, float], str] = fmt_frac) -> str:
    """"0.55 ± 0.25 / 0.53 ± 0.26 †": the aggregated row ``idx[key]``'s ASR self / ASR on benign clients, with
    ``mark`` (:func:`marks`); "n/a" and the mark where the row is missing (no run that learned)."""
    if key not in idx:
        return "n/a" + mark
    d = idx[key]
    return (f"{fmt(d['asr_self_mean'], d.get('asr_self_std', math.nan))} / "
            f"{fmt(d['asr_avg_benign_mean'], d.get('asr_avg_benign_std', math.nan))}{mark}")


def comparison(where: str, idx: Mapping[Any, Mapping[str, Any]], ours: Any, other: Any, metric: str) -> Comparison:
    """The :class:`Comparison` of ``metric`` between the aggregated rows ``idx[ours]`` and ``idx[other]`` (means,
    stds and the fewer seeds of the two); undefined (NaN) when either row is missing."""
    a, b = idx.get(ours), idx.get(other)
    if a is None or b is None:
        return Comparison(where, math.nan, math.nan)
    return compare_rows(where, a, b, metric)


def _learned(summary: pd.DataFrame) -> pd.Series:
    if "learned" not in summary.columns:
        return pd.Series(True, index=summary.index)
    return summary["learned"].map(lambda v: not (v is False or str(v).lower() == "false"))


def not_learned(summary: pd.DataFrame, by: str = "training") -> list[str]:
    """One line per (``by`` value, seed) whose run did not learn: "DP seed 1 (global acc 71.9%, majority 72.7%)"."""
    bad = summary[~_learned(summary)]
    out = []
    for (name, seed), g in bad.groupby([by, "seed"], sort=False):
        r = g.iloc[0]
        acc, maj = r.get("global_acc", math.nan), r.get("majority_class_rate", math.nan)
        out.append(f"{name} seed {seed} (global acc {fmt_pct(float(acc))}, majority class {fmt_pct(float(maj))})")
    return out


def learned_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs that learned: what every table of attack numbers averages (SPEC 11). Where no run learned
    (e.g. ``fedsafe crn-tables`` on one run that did not), every row, each marked by :func:`marks` and explained
    by :func:`not_learned_note`, so that the user still sees what was measured."""
    ok = _learned(summary)
    return summary[ok] if ok.any() else summary


def attack_means(summary: pd.DataFrame, learned: pd.DataFrame, by: Sequence[str],
                 metrics: Iterable[str] = METRICS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table means, verdict means) of the attack numbers, aggregated once: both over ``learned`` (the rows of
    :func:`learned_only`); where no run learned, the table shows every run's numbers as :func:`learned_rows` does
    and the verdicts have none."""
    verdict = aggregate(learned, by, metrics)
    return (verdict if len(learned) else aggregate(summary, by, metrics)), verdict


def learned_only(summary: pd.DataFrame, by: str = "training") -> tuple[pd.DataFrame, list[str]]:
    """The rows of runs that learned (what verdicts are made of), and :func:`not_learned`'s lines for the rest."""
    return summary[_learned(summary)], not_learned(summary, by)


def left_out(lines: list[str], *names: str) -> list[str]:
    """The lines of :func:`not_learned` about the trainings ``names`` (those a verdict compares)."""
    return [line for line in lines if any(line.startswith(f"{n} seed ") for n in names)]


def not_learned_note(summary: pd.DataFrame, by: str = "training") -> tuple[str, ...]:
    """The table note explaining :data:`NOT_LEARNED_MARK` (empty when every run learned)."""
    lines = not_learned(summary, by)
    if not lines:
        return ()
    head = (f"{NOT_LEARNED_MARK.strip()} did not learn (global accuracy within 2 points of the majority-class rate, "
            "SPEC 11): " + "; ".join(lines) + ". ")
    if not _learned(summary).any():
        return (head + "No run learned: the attack numbers above are of models that did not learn, shown for "
                "diagnosis only; they say nothing about robustness and enter no verdict.",)
    return (head + "Left out of the attack means above (n/a: no run that learned) and of every verdict on attacks; "
            "their rows stay in summary.csv and rows.csv.",)


def marks(summary: pd.DataFrame, by: str = "training") -> dict[Any, str]:
    """``by`` value -> :data:`NOT_LEARNED_MARK` when one of its runs did not learn, else ""."""
    bad = set(summary[~_learned(summary)][by])
    return {v: NOT_LEARNED_MARK if v in bad else "" for v in summary[by].unique()} if by in summary else {}


def fraction_text(info: RunInfo | None, fraction: float) -> str:
    """"f 0.2: 35-36 images (20% of |D_i|)": what f meant in the run (its client sizes from the privacy report, its
    server set from the data report, :func:`~fedsafe.defenses.adaptation.adaptation_counts`); "f 0.2 (counts n/a)"
    without the run's reports."""
    try:
        sizes = [int(n) for n in info.privacy["client_sizes"]]  # type: ignore[union-attr]
        server = int(sum(info.data_report["splits"]["server"].values()))  # type: ignore[union-attr]
    except (AttributeError, KeyError, TypeError, ValueError):
        return f"f {fraction:g} (counts n/a)"
    if info is not None and info.config is not None and info.config.defense.adaptation_data == "attack-sets":
        n = int(sum(sum(v.values()) for k, v in info.data_report["splits"].items() if k.endswith("_test")
                    and k.startswith("client")))
        return f"LEAKY: all {n} attack-set images ({100 * n / max(sizes):.0f}-{100 * n / min(sizes):.0f}% of |D_i|)"
    return fraction_label(fraction, adaptation_counts(fraction, sizes, server), sizes)
