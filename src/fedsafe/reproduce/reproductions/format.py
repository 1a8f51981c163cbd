"""What every builder shares: averaging over seeds, the cells of a table (ours, with the spread over seeds, beside
the paper's), the per-seed numbers of each arm (:class:`Arm`) from which every comparison of a verdict is paired on
its matched seeds, the runs that did not learn (flagged in the tables, left out of every comparison on attacks with
their seed, named with the reason: design §11), the real adaptation counts behind a fraction f, the papers' names of
our tasks, and the label of a run.

>>> fmt_frac(0.123, 0.01), fmt_seconds(0.21), fmt_num(float("inf"))
('0.12 ± 0.01', '0.210', 'inf')
>>> dataset("meningioma", "fed-safe"), dataset("breastmnist", "crn") is None
('MRI', True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pandas as pd

from ...defenses.adaptation import adaptation_counts, fraction_label
from ...jsonsafe import json_float
from ...runs.run import Run
from ...training.trainer import why_not_learned
from ...verdicts.claims import Comparison, Curve, Verdict, accuracy_verdict, fmt_pct
from .base import BuildInput

__all__ = ["METRICS", "NOT_LEARNED_MARK", "Arm", "accuracy_claim", "aggregate", "arms", "attack_means", "cell",
           "compare_rows", "comparison", "curve", "dataset", "fmt_frac", "fmt_num", "fmt_pct", "fmt_seconds",
           "fraction_text", "learned_only", "learned_rows", "marks", "no_paper_note", "not_learned", "not_learned_note",
           "paper_dataset", "paper_text", "paper_value", "run_label", "seed_std", "self_avg", "why_not_learned"]

METRICS = ("asr_self", "asr_avg_benign", "aasr", "aetr", "asr_self_literal", "asr_avg_benign_literal",
           "aasr_literal", "clean_acc", "attack_acc", "seconds_per_batch", "global_acc", "client_acc")
"""The numbers of a summary row that are averaged over seeds."""


def aggregate(summary: pd.DataFrame, by: Sequence[str], metrics: Iterable[str] = METRICS) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one seed) and number of seeds of each metric per group: what a
    table shows. Verdicts never use these means: they pair seeds (:func:`arms`, :func:`compare_rows`)."""
    metrics = [m for m in metrics if m in summary.columns]
    g = summary.groupby(list(by), sort=False, dropna=False)
    out = g[metrics].mean().add_suffix("_mean")
    out = out.join(g[metrics].std(ddof=1).add_suffix("_std"))
    out["seeds"] = g.size()
    return out.reset_index()


# -- the per-seed numbers of each arm, and the comparisons paired on matched seeds (design §11) -----------------------


@dataclass(frozen=True)
class Arm:
    """One group of a summary (an arm at one point: a training and attack setting) seed by seed: ``values``
    (metric -> seed -> number, every run) and ``not_learned`` (seed -> why its run did not learn)."""

    name: str
    values: Mapping[str, Mapping[int, float]]
    not_learned: Mapping[int, str]

    @property
    def seeds(self) -> list[int]:
        return sorted({s for v in self.values.values() for s in v})

    def by_seed(self, metric: str, *, learned_only: bool = True) -> dict[int, float]:
        """seed -> ``metric``, without the seeds whose run did not learn (unless ``learned_only`` is false)."""
        return {s: v for s, v in self.values.get(metric, {}).items()
                if not (learned_only and s in self.not_learned)}


def arms(summary: pd.DataFrame, by: Sequence[str], metrics: Iterable[str] = METRICS) -> dict[Any, Arm]:
    """Group key (a value for one ``by`` column, else a tuple, as :func:`aggregate`'s rows) -> :class:`Arm`, from
    every row of ``summary`` (the first row of a seed, where a group has several)."""
    metrics = [m for m in metrics if m in summary.columns]
    learned = _learned(summary)
    out: dict[Any, Arm] = {}
    for key, g in summary.groupby(list(by), sort=False, dropna=False):
        k = key[0] if isinstance(key, tuple) and len(by) == 1 else key
        first = g.drop_duplicates("seed")
        name = str(first["training"].iloc[0]) if "training" in first else str(k)
        bad = {int(r["seed"]): _did_not_learn(name, r) for _, r in first[~learned.loc[first.index]].iterrows()}
        out[k] = Arm(name, {m: {int(sd): json_float(v) for sd, v in zip(first["seed"], first[m], strict=True)}
                            for m in metrics}, bad)
    return out


def _did_not_learn(name: str, row: Mapping[str, Any]) -> str:
    """"adversarial training seed 2 did not learn (client 2's model 71.9% vs majority 72.4%; run 3f2a...)"."""
    run = f"; run {PurePath(row['run_dir']).name}" if isinstance(row.get("run_dir"), str) else ""
    return f"{name} seed {int(row['seed'])} did not learn ({why_not_learned(row)}{run})"


def compare_rows(where: str, a: Arm, b: Arm, metric: str, *, count_not_learned: bool = False) -> Comparison:
    """``metric`` of ``a`` against ``b`` on their matched seeds: the seeds both ran where both runs learned (every
    seed both ran with ``count_not_learned``, for a clean-accuracy claim); each seed left out is named with why."""
    only = not count_not_learned
    sa, sb = a.by_seed(metric, learned_only=only), b.by_seed(metric, learned_only=only)
    left = []
    for seed in sorted(set(a.seeds) | set(b.seeds)):
        if seed in sa and seed in sb:
            continue
        left += [arm.not_learned.get(seed, f"seed {seed}: no {arm.name} run")
                 for arm, vals in ((a, sa), (b, sb)) if seed not in vals]
    return Comparison.matched(where, sa, sb, left)


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
    n = len(inp.options.seeds)
    seeds = f", {n} seeds" if n > 1 else ""
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


def comparison(where: str, idx: Mapping[Any, Arm], ours: Any, other: Any, metric: str) -> Comparison:
    """:func:`compare_rows` of the arms ``idx[ours]`` and ``idx[other]`` (:func:`arms`); no matched seed (undefined)
    when either is missing."""
    a, b = idx.get(ours), idx.get(other)
    if a is None or b is None:
        missing = " and ".join(str(k) for k, v in ((ours, a), (other, b)) if v is None)
        return Comparison(where, (), (), left_out=(f"no run of {missing}",))
    return compare_rows(where, a, b, metric)


def curve(idx: Mapping[Any, Arm], keys: Sequence[Any], xs: Sequence[float], metric: str) -> Curve:
    """The :class:`~fedsafe.verdicts.claims.Curve` of ``metric`` over the arms ``keys`` (at ``xs``): at each
    x the seeds whose run learned; the runs that did not are named."""
    present = [(k, x) for k, x in zip(keys, xs, strict=True) if k in idx]
    gone = [line for k, _ in present for line in idx[k].not_learned.values()]
    return Curve([x for _, x in present], [idx[k].by_seed(metric) for k, _ in present], tuple(dict.fromkeys(gone)))


def accuracy_claim(claim: str, idx: Mapping[Any, Arm], a: Any, b: Any, names: tuple[str, str],
                   ref: Any = None) -> Verdict:
    """Does arm ``a`` keep at least arm ``b``'s clean accuracy? Every run counts, those that did not learn too
    (named): not learning is the cost such a claim asks about (design §11); the seeds still pair. ``ref`` (e.g. no
    defense) is quoted beside them, on the same seeds, when present."""
    if a not in idx or b not in idx:
        return accuracy_verdict(claim, comparison("clean accuracy", idx, a, b, "clean_acc"), names)
    point = compare_rows("clean accuracy", idx[a], idx[b], "clean_acc", count_not_learned=True)
    counted = [arm.not_learned[s] for arm in (idx[a], idx[b]) for s in point.seeds if s in arm.not_learned]
    ref_txt = ""
    if ref is not None and ref in idx:
        r = idx[ref].by_seed("clean_acc", learned_only=False)
        if all(s in r for s in point.seeds):
            rm = sum(r[s] for s in point.seeds) / point.n
            ref_txt = (f"; against {idx[ref].name} on the same seeds ({fmt_pct(rm)}): {names[0]} "
                       f"{100 * (point.mean_ours - rm):+.1f} points, {names[1]} {100 * (point.mean_other - rm):+.1f} "
                       "points")
    return accuracy_verdict(claim, point, names, counted=counted, ref=ref_txt)


def _learned(summary: pd.DataFrame) -> pd.Series:
    if "learned" not in summary.columns:
        return pd.Series(True, index=summary.index)
    return summary["learned"].map(lambda v: not (v is False or str(v).lower() == "false"))


def not_learned(summary: pd.DataFrame, by: str = "training") -> list[str]:
    """One line per (``by`` value, seed) whose run did not learn: "DP seed 1 (client 2's model 71.9% vs majority
    72.4%)" (:func:`why_not_learned`)."""
    bad = summary[~_learned(summary)]
    out = []
    for (name, seed), g in bad.groupby([by, "seed"], sort=False):
        out.append(f"{name} seed {seed} ({why_not_learned(g.iloc[0])})")
    return out


def learned_only(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of the runs that learned (none where none did)."""
    return summary[_learned(summary)]


def learned_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs that learned: what every table of attack numbers averages (design §11). Where no run learned
    (e.g. ``fedsafe crn-tables`` on one run that did not), every row, each marked by :func:`marks` and explained
    by :func:`not_learned_note`, so that the user still sees what was measured."""
    ok = _learned(summary)
    return summary[ok] if ok.any() else summary


def attack_means(summary: pd.DataFrame, by: Sequence[str], metrics: Iterable[str] = METRICS) -> pd.DataFrame:
    """The table means of the attack numbers: over the runs that learned (:func:`learned_rows`: every run, marked,
    where none did). Verdicts do not use them: they pair seeds (:func:`arms`)."""
    return aggregate(learned_rows(summary), by, metrics)


def not_learned_note(summary: pd.DataFrame, by: str = "training") -> tuple[str, ...]:
    """The table note explaining :data:`NOT_LEARNED_MARK` (empty when every run learned)."""
    lines = not_learned(summary, by)
    if not lines:
        return ()
    head = (f"{NOT_LEARNED_MARK.strip()} did not learn (the global model or an attacked client model within 2 points "
            "of the majority-class rate, design §11): " + "; ".join(lines) + ". ")
    if not _learned(summary).any():
        return (head + "No run learned: the attack numbers above are of models that did not learn, shown for "
                "diagnosis only; they say nothing about robustness and enter no verdict.",)
    return (head + "Left out of the attack means above (n/a: no run that learned) and, with their seed, of every "
            "comparison on attacks with their arm; their rows stay in summary.csv and rows.csv.",)


def marks(summary: pd.DataFrame, by: str = "training") -> dict[Any, str]:
    """``by`` value -> :data:`NOT_LEARNED_MARK` when one of its runs did not learn, else ""."""
    bad = set(summary[~_learned(summary)][by])
    return {v: NOT_LEARNED_MARK if v in bad else "" for v in summary[by].unique()} if by in summary else {}


def fraction_text(info: Run | None, fraction: float) -> str:
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
