"""One command per table and figure of the papers (SPEC section 9): what to train, what to attack, and how to
show it beside the papers' numbers.

A :class:`Reproduction` declares its training configurations (overrides over the profile), its attack
measurements (an :class:`~fedsafe.experiments.transfer.AttackSpec` on one of those trainings, with tags saying
where it goes in the table), and a builder that turns the measured numbers into tables (ours beside the papers'),
figures and verdicts. ``REPRODUCTIONS`` is the registry; ``GROUPS["all"]`` names every one.

The settings (SPEC 9 and the papers; where a paper leaves a value out, the choice is named in the output):

==================  =========================================================================================
crn-table1          3 clients, downlink noise 0.01, online CRN (eps 0.05); PGD-1+CRN10, PGD-20, PGD-40 at eps
                    0.05, alpha 0.001: ACC, AASR, time per batch
crn-table2          the same run; AETR of FGSM and PGD-40 x vanilla / CRN5 / CRN10
crn-fig2            the same run; PGD-20 (eps 0.05) +- CRN5/CRN10 at alpha 0.001 ... 0.02; ASR benign vs adversary
crn-fig3            the same run; FGSM and PGD-20 (alpha 0.005) +- CRN5/CRN10 at eps 0.01 ... 0.07
fedsafe-table1      no defense / adversarial training (downlink noise 0) / Fed-Safe (downlink noise 0.01);
                    PGD-20, eps 0.05 (not given by the paper), alpha ("Step") 0.005, 0.012, 0.017, 0.05
fedsafe-table2      Fed-Safe without / with DP (uplink clip C = 5 x the initial model norm, uplink noise 0.001;
                    the accountant's epsilon reported); PGD-20, alpha eps/4 at eps 0.01, 0.03, 0.05, 0.07
fedsafe-fig3        both defenses at adaptation fraction f in 0.1 ... 1.0; PGD-20 eps 0.05 alpha 0.005
==================  =========================================================================================

Trainings are shared through :class:`~fedsafe.experiments.cache.RunCache` (the four CRN reproductions train one
federation; Fed-Safe Table 1, Table 2 and Figure 3 share their f = 1 runs), attack evaluations through the
run's ``attacks/`` folder. ``--quick`` trains 10 rounds of 1 local epoch and says so in every output.

Outputs, in ``RESULTS/<name>/<task>/``: ``rows.csv`` (every measured row: attacker x target x attack x seed),
``summary.csv`` (one row per attack configuration and seed), ``table.csv`` (mean and std over seeds),
``<name>.md`` (the tables beside the papers' numbers, the figures, the verdicts), the figures (PNG and SVG),
``verdicts.json`` and ``manifest.json`` (what :mod:`fedsafe.report.html` reads).

>>> # p = plan(["crn-table1"], tasks=["meningioma"], results="results", options=Options(profile="cpu"))
>>> # print("\\n".join(p.describe())); written = execute(p)
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..build import model_factory
from ..config import ExperimentConfig, config_hash, load_config
from ..data.tasks import TASKS
from ..progress import Progress
from ..runs.atomic import write_json, write_text
from ..runs.rundir import RunDir
from ..runs.store import RunStore
from . import figures as figs
from .cache import Evaluation, RunCache, task_data_root
from .crn_tables import table_specs
from .paper_numbers import crn_table_1, crn_table_2, fedsafe_table_1, fedsafe_table_2, lookup
from .transfer import AttackSpec
from .verdicts import Comparison, Verdict, compare, fmt_pct, trend

__all__ = [
    "GROUPS", "PAPER_TASKS", "QUICK_OVERRIDES", "REPRODUCTIONS", "TASK_NAMES", "BuildInput", "Built", "Measurement",
    "Options", "Plan", "PlannedRun", "Reproduction", "Table", "Written", "accuracy_verdict", "aggregate", "cell",
    "execute", "expand_tasks", "fmt_frac", "fmt_seconds", "markdown_table", "plan", "resolve", "run_label",
]

log = logging.getLogger(__name__)

TASK_NAMES = ("meningioma", "glioma", "brain-tumor-4class", "breastmnist", "pcam", "synthetic")
QUICK_OVERRIDES = ("train.rounds=10", "train.local_epochs=1")
"""--quick: 10 rounds (CRN10 needs 10) of one local epoch."""

METRICS = ("asr_self", "asr_avg_benign", "aasr", "aetr", "asr_self_literal", "asr_avg_benign_literal",
           "aasr_literal", "clean_acc", "attack_acc", "seconds_per_batch", "global_acc", "client_acc")
_DEFAULT_MACS_PER_SECOND = 60e9
"""A rough CPU figure for the first estimate, replaced by one measured on the plan's finished runs when there are
any (2-core AVX512-BF16 CPU, cpu profile, bf16 training + fp32 channels-last attacks: 79 GMAC/s measured on the
meningioma CRN run)."""

# -- what a reproduction is ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One attack configuration on one training of a reproduction; ``tags`` place it in the table."""

    training: str
    spec: AttackSpec
    tags: tuple[tuple[str, Any], ...] = ()
    heatmap: bool = True  # show its attacker x target matrix in the report

    def tag(self) -> dict[str, Any]:
        return dict(self.tags)


@dataclass(frozen=True)
class Options:
    """How to run: profile, seeds (0 .. seeds-1), quick, extra ``key=value`` overrides (over the profile, under
    the reproduction's own settings), and the attack evaluation's precision and batch size."""

    profile: str = "cpu"
    seeds: int = 1
    quick: bool = False
    overrides: tuple[str, ...] = ()
    precision: str = "fp32"
    batch_size: int = 100
    sanity: bool = True

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class Table:
    """A table to show: display strings (ours beside the papers'), and notes under it."""

    title: str
    frame: pd.DataFrame
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildInput:
    """What a builder receives: the measurements of one reproduction on one task, over every seed."""

    reproduction: Reproduction
    task: str
    options: Options
    summary: pd.DataFrame  # one row per (measurement, seed)
    runs: dict[str, dict[str, Any]]  # training name -> seed-0 run: config, summary, privacy report, run_dir

    @property
    def quick(self) -> bool:
        return self.options.quick


@dataclass(frozen=True)
class Built:
    tables: tuple[Table, ...]
    figures: tuple[tuple[str, Any, str], ...]  # (file stem, matplotlib Figure, caption)
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...] = ()
    data: pd.DataFrame | None = None  # the aggregated numbers behind the tables (table.csv)


@dataclass(frozen=True)
class Reproduction:
    """A table or figure of a paper: trainings (name -> overrides, from the task's base config), measurements
    (seed -> list), and the builder."""

    name: str
    title: str
    paper: str
    trainings: Callable[[ExperimentConfig], dict[str, tuple[str, ...]]]
    measurements: Callable[[int], list[Measurement]]
    build: Callable[[BuildInput], Built]
    setting: str = ""


# -- aggregation and formatting ---------------------------------------------------------------------------------


def aggregate(summary: pd.DataFrame, by: Sequence[str], metrics: Iterable[str] = METRICS) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one seed) and number of seeds of each metric per group."""
    metrics = [m for m in metrics if m in summary.columns]
    g = summary.groupby(list(by), sort=False, dropna=False)
    out = g[metrics].mean().add_suffix("_mean")
    out = out.join(g[metrics].std(ddof=1).add_suffix("_std"))
    out["seeds"] = g.size()
    return out.reset_index()


def cell(row: pd.Series | dict, metric: str, fmt: Callable[[float, float], str] = fmt_pct) -> str:
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


def _ptext(number: Any) -> str:
    """A paper's cell as printed (a PaperNumber's text), or "—" where the paper has none."""
    return "—" if number is None else str(number.text)


def _paper(value: float | None, fmt: Callable[[float, float], str] = fmt_pct) -> str:
    return "—" if value is None else fmt(value, math.nan)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of a frame of strings."""
    cols = [str(c) for c in frame.columns]
    esc = [[str(v).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


def _dataset(task: str, paper: str) -> str | None:
    """The papers' name of a task (None: the paper did not use it)."""
    names = {"crn": {"meningioma": "Meningioma", "glioma": "Glioma", "pcam": "Pathology"},
             "fed-safe": {"meningioma": "MRI", "glioma": "Glioma", "pcam": "Pathology"}}
    return names[paper].get(task)


def _no_paper_note(task: str, paper: str, tables: str) -> tuple[str, ...]:
    if _dataset(task, paper) is not None:
        return ()
    return (f"The paper reports no {tables} numbers for {task}: the paper columns are empty (—).",)


# -- the shared settings ----------------------------------------------------------------------------------------

_CRN_RUN = ("splits.num_clients=3", "defense.name=none", "federation.downlink_noise=0.01", "crn.enabled=true",
            "crn.eps=0.05", "crn.windows=[5,10]")
_BASE_FS = ("splits.num_clients=3", "crn.enabled=false")
_NO_DEFENSE = (*_BASE_FS, "defense.name=none", "federation.downlink_noise=0")
_ADV_TRAINING = (*_BASE_FS, "defense.name=adversarial-training", "federation.downlink_noise=0")
_FED_SAFE = (*_BASE_FS, "defense.name=fed-safe", "federation.downlink_noise=0.01")
_METHODS = {"adversarial training": _ADV_TRAINING, "distributed noise (Fed-Safe)": _FED_SAFE}
AT, DN, NONE = "adversarial training", "distributed noise (Fed-Safe)", "no defense (FedAvg)"

FS_STEPS = (0.005, 0.012, 0.017, 0.05)
FS_TABLE1_EPS, FS_ATTACK_STEPS = 0.05, 20
FS_TABLE2_EPS = (0.01, 0.03, 0.05, 0.07)
FS_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
FS_FIG3_ALPHA = 0.005
DP_UPLINK_NOISE = 0.001
DP_CLIP_TIMES_NORM = 5
CRN_ALPHAS = (0.001, 0.003, 0.005, 0.01, 0.02)
CRN_EPS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07)
CRN_SWEEP_STEPS, CRN_FIG3_ALPHA = 20, 0.005


def _crn_trainings(base: ExperimentConfig) -> dict[str, tuple[str, ...]]:
    return {"crn": _CRN_RUN}


def _tags(**kw: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(kw.items())


# -- CRN Table I ------------------------------------------------------------------------------------------------


def _crn_t1_measurements(seed: int) -> list[Measurement]:
    t1, _ = table_specs(seed=seed)
    return [Measurement("crn", spec, _tags(row=label)) for label, spec in t1.items()]


def _crn_t2_measurements(seed: int) -> list[Measurement]:
    _, t2 = table_specs(seed=seed)
    return [Measurement("crn", spec, _tags(attack_name=name, start_name=start)) for (name, start), spec in t2.items()]


def _build_crn_t1(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["row"])
    ds = _dataset(inp.task, "crn")
    paper = crn_table_1(ds) if ds else {}
    by = {r.row: r for r in agg.itertuples()}
    rows = []
    for label, r in by.items():
        p = paper.get("PGD-1+CRN10" if label.startswith("PGD-1+CRN") else label, {})
        rows.append({
            "attack": label, "ACC": cell(r._asdict(), "clean_acc"),
            "ACC (paper)": _ptext(p.get("ACC")),
            "AASR": cell(r._asdict(), "aasr"), "AASR (paper)": _ptext(p.get("AASR")),
            "ASR benign": cell(r._asdict(), "asr_avg_benign"), "ASR self": cell(r._asdict(), "asr_self"),
            "s/batch": cell(r._asdict(), "seconds_per_batch", fmt_seconds),
            "s/batch (paper, GPU)": _ptext(p.get("time")),
            "passes/image": str(int(inp.summary[inp.summary.row == label].fb_passes_per_image.iloc[0])),
            "CRN passes/image (training)": str(int(inp.summary[inp.summary.row == label].crn_passes_per_image.iloc[0])),
        })
    table = Table("CRN Table I: clean accuracy, AASR and attack time (eps 0.05, alpha 0.001)", pd.DataFrame(rows),
                  ("ACC: the clients' clean accuracy on the attack sets; AASR: ASR averaged over every (attacker, "
                   "target); s/batch: wall seconds to craft one attacker's batch on this CPU (the paper: a GPU).",
                   *_no_paper_note(inp.task, "crn", "CRN Table I")))
    crn = next((r for label, r in by.items() if label.startswith("PGD-1+CRN")), None)
    verdicts = []
    for other in ("PGD-40", "PGD-20"):
        if crn is None or other not in by:
            continue
        o = by[other]
        faster = o.seconds_per_batch_mean / crn.seconds_per_batch_mean if crn.seconds_per_batch_mean > 0 else math.nan
        higher = crn.aasr_mean > o.aasr_mean
        cheaper = crn.seconds_per_batch_mean < o.seconds_per_batch_mean
        status = "holds" if higher and cheaper else "partly" if higher or cheaper else "does not hold"
        paper_txt = ""
        if ds and other in paper and "PGD-1+CRN10" in paper:
            pc, po = paper["PGD-1+CRN10"], paper[other]
            paper_txt = (f"AASR {pc['AASR'].text} vs {po['AASR'].text}, {po['time'].value / pc['time'].value:.0f}x "
                         f"faster ({ds}).")
        verdicts.append(Verdict(
            f"{crn.row} beats {other} at a fraction of its cost", status,
            f"AASR {fmt_pct(crn.aasr_mean, crn.aasr_std)} vs {fmt_pct(o.aasr_mean, o.aasr_std)} "
            f"({'higher' if higher else 'not higher'}); attack time {fmt_seconds(crn.seconds_per_batch_mean)} vs "
            f"{fmt_seconds(o.seconds_per_batch_mean)} s a batch ({faster:.1f}x faster). The CRN's own cost "
            f"({int(inp.summary[inp.summary.row == crn.row].crn_passes_per_image.iloc[0])} passes an image) is "
            "paid during training, over the last rounds.", paper_txt))
    plot = agg.assign(series="ours")
    if ds:
        plot["paper"] = [paper.get("PGD-1+CRN10" if r.startswith("PGD-1+CRN") else r, {}).get("AASR") for r in
                         plot.row]
        plot["paper"] = [p.value if p is not None else math.nan for p in plot["paper"]]
    fig = figs.bars(plot, category="row", series="series", metric="aasr", ylabel="AASR",
                    title=f"CRN Table I: AASR — {run_label(inp)}", paper="paper" if ds else None)
    return Built((table,), (("table1", fig, "AASR of each attack (hatched: the paper's)"),), tuple(verdicts),
                 data=agg)


def _build_crn_t2(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["attack_name", "start_name"])
    ds = _dataset(inp.task, "crn")
    paper = crn_table_2(ds) if ds else {}
    steps = {r.attack_name: int(r.steps) for r in inp.summary.itertuples()}
    rows = []
    for r in agg.itertuples():
        d = r._asdict()
        p = paper.get((r.attack_name, "Vanilla" if r.start_name == "vanilla" else r.start_name.upper()))
        rows.append({"attack": r.attack_name if r.attack_name == "FGSM" else f"PGD-{steps[r.attack_name]}",
                     "start": r.start_name, "AETR": cell(d, "aetr"), "AETR (paper)": _ptext(p),
                     "ASR benign": cell(d, "asr_avg_benign"), "ASR self": cell(d, "asr_self"),
                     "AASR": cell(d, "aasr")})
    table = Table("CRN Table II: average error transfer rate (AETR), eps 0.05", pd.DataFrame(rows),
                  ("AETR: among the samples that fooled the attacker's own model and that a benign client classified "
                   "correctly, the share that also fool it. Vanilla: FGSM from zero, PGD from a uniform random start; "
                   "PGD: 40 steps of 0.001 (the paper: 40 iterations, eps and alpha not stated).",
                   *_no_paper_note(inp.task, "crn", "CRN Table II")))
    idx = agg.set_index(["attack_name", "start_name"])
    aetr, benign = [], []
    for name in dict.fromkeys(agg.attack_name):
        v = idx.loc[(name, "vanilla")]
        for start in [s for s in dict.fromkeys(agg.start_name) if s != "vanilla"]:
            c = idx.loc[(name, start)]
            where = f"{name} {start.upper()}"
            aetr.append(Comparison(where, c.aetr_mean, v.aetr_mean, c.aetr_std, v.aetr_std))
            benign.append(Comparison(where, c.asr_avg_benign_mean, v.asr_avg_benign_mean, c.asr_avg_benign_std,
                                     v.asr_avg_benign_std))
    ptxt = ""
    if ds:
        ptxt = "AETR " + ", ".join(f"{a} {s}: {p.text}" for (a, s), p in paper.items()) + f" ({ds})."
    verdicts = (
        compare("CRN raises the transfer of errors to benign clients (AETR)", aetr, expect="higher",
                names=("CRN", "vanilla"), paper=ptxt),
        compare("CRN raises the ASR on benign clients", benign, expect="higher", names=("CRN", "vanilla")),
    )
    plot = agg.assign(series=[a for a in agg.attack_name], start_label=[s.upper() if s != "vanilla" else "Vanilla"
                                                                          for s in agg.start_name])
    if ds:
        plot["paper"] = [paper[(a, s)].value if (a, s) in paper else math.nan
                         for a, s in zip(plot.series, plot.start_label, strict=True)]
    fig = figs.bars(plot, category="start_label", series="series", metric="aetr", ylabel="AETR",
                    title=f"CRN Table II: AETR — {run_label(inp)}", paper="paper" if ds else None)
    return Built((table,), (("table2", fig, "AETR per attack and start (hatched: the paper's)"),), verdicts, data=agg)


# -- CRN Figures 2 and 3 ----------------------------------------------------------------------------------------


def _crn_fig2_measurements(seed: int) -> list[Measurement]:
    out = []
    for a in CRN_ALPHAS:
        for start in ("random", "crn5", "crn10"):
            spec = AttackSpec(attack="pgd", eps=0.05, alpha=a, steps=CRN_SWEEP_STEPS, start=start, seed=seed)
            out.append(Measurement("crn", spec, _tags(curve=spec.label, alpha=a), heatmap=a == 0.005))
    return out


def _crn_fig3_measurements(seed: int) -> list[Measurement]:
    out = []
    for e in CRN_EPS:
        for attack, vanilla in (("fgsm", "zero"), ("pgd", "random")):
            for start in (vanilla, "crn5", "crn10"):
                spec = AttackSpec(attack=attack, eps=e, alpha=CRN_FIG3_ALPHA, steps=CRN_SWEEP_STEPS, start=start,
                                  seed=seed)
                out.append(Measurement("crn", spec, _tags(curve=spec.label, eps_value=e), heatmap=e == 0.05))
    return out


def _curve_table(agg: pd.DataFrame, x: str, xname: str) -> pd.DataFrame:
    rows = []
    for r in agg.itertuples():
        d = r._asdict()
        rows.append({xname: f"{getattr(r, x):g}", "attack": r.curve, "ASR benign": cell(d, "asr_avg_benign"),
                     "ASR adversary (self)": cell(d, "asr_self"), "AASR": cell(d, "aasr"), "AETR": cell(d, "aetr")})
    return pd.DataFrame(rows)


def _crn_comparisons(agg: pd.DataFrame, x: str, xname: str) -> list[Comparison]:
    """CRN-started curve vs its vanilla curve at each x, ASR on benign clients."""
    out = []
    vanilla = {c for c in agg.curve if "+CRN" not in c}
    idx = agg.set_index(["curve", x])
    for c in dict.fromkeys(agg.curve):
        if c in vanilla:
            continue
        base = c.split("+")[0]
        if base not in vanilla:
            continue
        for xv in sorted(agg[agg.curve == c][x]):
            a, b = idx.loc[(c, xv)], idx.loc[(base, xv)]
            out.append(Comparison(f"{c} at {xname} {xv:g}", a.asr_avg_benign_mean, b.asr_avg_benign_mean,
                                  a.asr_avg_benign_std, b.asr_avg_benign_std))
    return out


def _build_crn_fig2(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["curve", "alpha"])
    fig = figs.line_panels(agg, x="alpha", series="curve", logx=True, xlabel="step size alpha",
                           panels=[("asr_avg_benign", "(a) ASR on benign clients"),
                                   ("asr_self", "(b) ASR on the adversarial client")],
                           title=f"CRN Figure 2: ASR vs alpha (PGD-{CRN_SWEEP_STEPS}, eps 0.05) — {run_label(inp)}")
    table = Table(f"CRN Figure 2: ASR vs step size alpha (PGD-{CRN_SWEEP_STEPS}, eps 0.05, with and without CRN)",
                  _curve_table(agg, "alpha", "alpha"),
                  ("The paper gives Figure 2 as a plot only: there are no numbers to put beside ours. The number of "
                   f"PGD steps is not stated: {CRN_SWEEP_STEPS} here.",))
    best = []
    for c in dict.fromkeys(agg.curve):
        g = agg[agg.curve == c]
        top = g.loc[g.asr_avg_benign_mean.idxmax()] if g.asr_avg_benign_mean.notna().any() else None
        best.append((c, None if top is None else float(top.alpha), None if top is None else top.asr_avg_benign_mean))
    ok = sum(1 for _, a, _ in best if a is not None and math.isclose(a, 0.005))
    defined = sum(1 for _, a, _ in best if a is not None)
    status = "undetermined" if not defined else "holds" if ok == defined else "does not hold" if ok == 0 else "partly"
    verdicts = (
        compare("CRN raises the ASR on benign clients (at every step size)", _crn_comparisons(agg, "alpha", "alpha"),
                expect="higher", names=("CRN", "vanilla"),
                paper="'The addition of CRN initialization consistently boosted the attack success rate, "
                      "particularly against benign clients' (Section IV.B)."),
        Verdict("alpha = 0.005 is the most effective step for transfer to benign clients", status,
                "best alpha per curve: " + "; ".join(f"{c}: {a:g} ({fmt_pct(v)})" for c, a, v in best
                                                       if a is not None) + ".",
                "'A step size of alpha = 0.005 emerged as the most effective' (Section IV.B)."),
    )
    return Built((table,), (("fig2", fig, "ASR on benign clients (a) and on the adversary (b) against alpha"),),
                 verdicts, data=agg)


def _build_crn_fig3(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["curve", "eps_value"])
    fig = figs.line_panels(agg, x="eps_value", series="curve", xlabel="budget eps",
                           panels=[("asr_avg_benign", "(a) ASR on benign clients"),
                                   ("asr_self", "(b) ASR on the adversarial client")],
                           title=f"CRN Figure 3: ASR vs eps (FGSM, PGD-{CRN_SWEEP_STEPS} alpha {CRN_FIG3_ALPHA}) — "
                                 f"{run_label(inp)}")
    table = Table(f"CRN Figure 3: ASR vs budget eps (FGSM; PGD-{CRN_SWEEP_STEPS}, alpha {CRN_FIG3_ALPHA}; with and "
                  "without CRN)", _curve_table(agg, "eps_value", "eps"),
                  ("The paper gives Figure 3 as a plot only: there are no numbers to put beside ours. PGD's steps "
                   f"and step size are not stated: {CRN_SWEEP_STEPS} steps of {CRN_FIG3_ALPHA} here (the step the "
                   "paper found best in Figure 2).",))
    curves = {c: (list(g.eps_value), list(g.asr_avg_benign_mean)) for c, g in agg.groupby("curve", sort=False)}
    own = {c: (list(g.eps_value), list(g.asr_self_mean)) for c, g in agg.groupby("curve", sort=False)}
    verdicts = (
        trend("ASR on benign clients rises with eps", curves, expect="increasing", xname="eps",
              paper="'As the value of eps escalates, there is a consistent rise in the ASR' (Section IV.D)."),
        trend("ASR on the adversarial client rises with eps", own, expect="increasing", xname="eps"),
        compare("CRN raises the ASR on benign clients (at every eps)", _crn_comparisons(agg, "eps_value", "eps"),
                expect="higher", names=("CRN", "vanilla"),
                paper="'Across all tested scenarios, the introduction of CRN consistently enhances the "
                      "transferability of attacks' (Section IV.D)."),
    )
    return Built((table,), (("fig3", fig, "ASR on benign clients (a) and on the adversary (b) against eps"),),
                 verdicts, data=agg)


# -- Fed-Safe Table 1 -------------------------------------------------------------------------------------------


def _fs_t1_trainings(base: ExperimentConfig) -> dict[str, tuple[str, ...]]:
    return {NONE: _NO_DEFENSE, AT: (*_ADV_TRAINING, "defense.fraction=1.0"), DN: (*_FED_SAFE, "defense.fraction=1.0")}


def _fs_t1_measurements(seed: int) -> list[Measurement]:
    return [Measurement(method, AttackSpec(attack="pgd", eps=FS_TABLE1_EPS, alpha=a, steps=FS_ATTACK_STEPS,
                                           start="random", seed=seed), _tags(method=method, step=a))
            for method in (NONE, AT, DN) for a in FS_STEPS]


def _fs_paper_t1(ds: str | None) -> dict[tuple[str, str, str], float]:
    if ds is None:
        return {}
    out = {}
    for p in fedsafe_table_1(ds):
        method, _, col = p.column.partition(": ")
        out[(p.row, method, col)] = p.value
    return out


def _self_avg(d: dict, fmt: Callable[[float, float], str] = fmt_frac) -> str:
    return f"{fmt(d['asr_self_mean'], d.get('asr_self_std', math.nan))} / " \
           f"{fmt(d['asr_avg_benign_mean'], d.get('asr_avg_benign_std', math.nan))}"


def _build_fs_t1(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["method", "step"])
    ds = _dataset(inp.task, "fed-safe")
    paper = _fs_paper_t1(ds)
    idx = {(r.method, r.step): r._asdict() for r in agg.itertuples()}
    rows = []
    for step in FS_STEPS:
        key = f"step {step:g}"

        def pp(method: str, key: str = key) -> str:
            s, a = paper.get((key, method, "ASR self")), paper.get((key, method, "ASR avg"))
            return "—" if s is None else f"{s:.2f} / {a:.2f}"

        rows.append({"step (alpha)": f"{step:g}",
                     "adversarial training: self / avg": _self_avg(idx[(AT, step)]) if (AT, step) in idx else "n/a",
                     "(paper)": pp("adversarial training"),
                     "distributed noise: self / avg": _self_avg(idx[(DN, step)]) if (DN, step) in idx else "n/a",
                     "(paper) ": pp("distributed noise"),
                     "no defense: self / avg": _self_avg(idx[(NONE, step)]) if (NONE, step) in idx else "n/a"})
    table = Table(f"Fed-Safe Table 1: ASR self / avg, adversarial training vs distributed noise (PGD-{FS_ATTACK_STEPS},"
                  f" eps {FS_TABLE1_EPS})", pd.DataFrame(rows),
                  (f"The paper gives the step but not eps or the number of steps: eps {FS_TABLE1_EPS} and "
                   f"{FS_ATTACK_STEPS} steps here. ASR self: the attacker against its own model; avg: mean over the "
                   "benign clients. Adversarial training: downlink noise 0, every client gets the same model; "
                   "distributed noise: downlink noise 0.01, each client its own adapted copy. No defense: plain "
                   "FedAvg (not in the paper), for reference.", *_no_paper_note(inp.task, "fed-safe", "Table 1")))
    acc_rows, accs = [], {}
    for method in (NONE, AT, DN):
        sub = inp.summary[inp.summary.method == method]
        if sub.empty:
            continue
        per_seed = sub.groupby("seed")[["clean_acc", "global_acc", "client_acc"]].first()
        accs[method] = per_seed
        info = inp.runs.get(method, {})
        cost = (info.get("privacy") or {}).get("defense_cost", {})
        acc_rows.append({"method": method,
                         "clean acc (clients, attack sets)": fmt_pct(per_seed.clean_acc.mean(),
                                                                     _std(per_seed.clean_acc)),
                         "global model acc (global test)": fmt_pct(per_seed.global_acc.mean(),
                                                                   _std(per_seed.global_acc)),
                         "server defense passes": f"{cost.get('server', {}).get('passes', 0):.0f}",
                         "training wall s": f"{cost.get('wall_seconds', math.nan):.0f}"})
    acc_table = Table("Clean accuracy and defense cost", pd.DataFrame(acc_rows),
                      ("Clean accuracy: every client's final model on the attackers' test sets (mean over (attacker, "
                       "target)). The paper reports no clean accuracy for Table 1.",))
    steps = [f"step {s:g}" for s in FS_STEPS]

    def comps(metric: str, a: str, b: str) -> list[Comparison]:
        return [Comparison(w, idx[(a, s)][f"{metric}_mean"], idx[(b, s)][f"{metric}_mean"],
                           idx[(a, s)][f"{metric}_std"], idx[(b, s)][f"{metric}_std"])
                for w, s in zip(steps, FS_STEPS, strict=True) if (a, s) in idx and (b, s) in idx]

    pv = ""
    if ds:
        pv = "avg ASR AT vs DN: " + ", ".join(
            f"step {s:g}: {paper.get((f'step {s:g}', 'adversarial training', 'ASR avg'), math.nan):.2f} vs "
            f"{paper.get((f'step {s:g}', 'distributed noise', 'ASR avg'), math.nan):.2f}" for s in FS_STEPS)
        pv += f" ({ds})."
    verdicts = [
        compare("Distributed noise lowers the average ASR (benign clients) compared with adversarial training",
                comps("asr_avg_benign", DN, AT), expect="lower", names=("DN", "AT"), fmt=fmt_frac, paper=pv),
        compare("Distributed noise lowers the attacker's self ASR compared with adversarial training",
                comps("asr_self", DN, AT), expect="lower", names=("DN", "AT"), fmt=fmt_frac,
                paper="'reduce the attacker's self-ASR by up to 8%, and the attacker's average ASR by up to 27%'."),
        compare("Adversarial training lowers the average ASR compared with no defense",
                comps("asr_avg_benign", AT, NONE), expect="lower", names=("AT", "none"), fmt=fmt_frac),
        compare("Distributed noise lowers the average ASR compared with no defense",
                comps("asr_avg_benign", DN, NONE), expect="lower", names=("DN", "none"), fmt=fmt_frac),
    ]
    if DN in accs and AT in accs:
        verdicts.append(accuracy_verdict("Distributed noise costs no more clean accuracy than adversarial training",
                                     accs, DN, AT, NONE))
    plot = agg.assign(step_label=[f"{s:g}" for s in agg.step])
    fig = figs.bars(plot, category="step_label", series="method", metric="asr_avg_benign", ylabel="ASR avg (benign)",
                    title=f"Fed-Safe Table 1: average ASR on benign clients per step — {run_label(inp)}")
    return Built((table, acc_table), (("table1", fig, "ASR on benign clients per PGD step and method"),),
                 tuple(verdicts), data=agg)


def _std(s: pd.Series) -> float:
    return float(s.std(ddof=1)) if len(s) > 1 else math.nan


def accuracy_verdict(claim: str, accs: dict[str, pd.DataFrame], a: str, b: str, ref: str | None) -> Verdict:
    x, y = accs[a].clean_acc, accs[b].clean_acc
    ok = x.mean() >= y.mean()
    ref_txt = ""
    if ref and ref in accs:
        r = accs[ref].clean_acc.mean()
        ref_txt = (f"; against no defense ({fmt_pct(r)}): {a} {100 * (x.mean() - r):+.1f} points, "
                   f"{b} {100 * (y.mean() - r):+.1f} points")
    return Verdict(claim, "holds" if ok else "does not hold",
                   f"clean accuracy {a} {fmt_pct(x.mean(), _std(x))} vs {b} {fmt_pct(y.mean(), _std(y))} "
                   f"({100 * (x.mean() - y.mean()):+.1f} points){ref_txt}.")


# -- Fed-Safe Table 2 -------------------------------------------------------------------------------------------


def dp_clip(base: ExperimentConfig) -> float:
    """The uplink clip C of the DP runs: ``DP_CLIP_TIMES_NORM`` x the L2 norm of the initial model, rounded up
    (clipping the whole weights, SPEC 3, must not shrink a model that trains normally)."""
    spec = TASKS[base.task.name]
    model = model_factory(base, num_classes=len(spec.class_names), in_channels=base.task.channels, layout=False,
                          device="cpu")()
    norm = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))
    return float(math.ceil(DP_CLIP_TIMES_NORM * norm))


def _fs_t2_trainings(base: ExperimentConfig) -> dict[str, tuple[str, ...]]:
    c = dp_clip(base)
    return {"no DP": (*_FED_SAFE, "defense.fraction=1.0"),
            "DP": (*_FED_SAFE, "defense.fraction=1.0", f"federation.uplink_clip={c:g}",
                   f"federation.uplink_noise={DP_UPLINK_NOISE:g}")}


def _fs_t2_measurements(seed: int) -> list[Measurement]:
    return [Measurement(dp, AttackSpec(attack="pgd", eps=e, alpha=e / 4, steps=FS_ATTACK_STEPS, start="random",
                                       seed=seed), _tags(dp=dp, eps_value=e))
            for dp in ("no DP", "DP") for e in FS_TABLE2_EPS]


def _epsilon(info: dict[str, Any]) -> str:
    priv = info.get("privacy") or {}
    pld = priv.get("pld", {})
    e = pld.get("epsilon")
    if e is None:
        return "n/a"
    up, down = pld.get("epsilon_uplink"), pld.get("epsilon_downlink")
    return f"{_num(e)} (uplink {_num(up)}, downlink {_num(down)}; delta {priv.get('delta')})"


def _num(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "inf" if math.isinf(f) else f"{f:.4g}"


def _final_norm(info: dict[str, Any]) -> float:
    rd = info.get("run_dir")
    rounds = (info.get("config") or {}).get("train", {}).get("rounds")
    if rd is None or rounds is None:
        return math.nan
    path = RunDir(Path(rd)).global_model(int(rounds))
    if not path.is_file():
        return math.nan
    state = RunStore(rd, config_hash=config_hash(info["config"])).load_global(int(rounds))
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in state.values() if v.is_floating_point()))


def _build_fs_t2(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["dp", "eps_value"])
    ds = _dataset(inp.task, "fed-safe")
    paper: dict[tuple[str, str], Any] = {}
    if ds in ("MRI", "Pathology"):
        paper = {(p.row, p.column): p for p in fedsafe_table_2(ds)}
    elif ds == "Glioma":
        g = lookup(paper="fed-safe", table="text", dataset="Glioma", row="every eps", column="ASR avg, DP")
        paper = {(f"eps {e:g}", "ASR avg, DP"): g for e in FS_TABLE2_EPS}
    idx = {(r.dp, r.eps_value): r._asdict() for r in agg.itertuples()}
    rows = []
    for e in FS_TABLE2_EPS:
        row = f"eps {e:g}"
        rows.append({"eps": f"{e:g}",
                     "avg ASR, no DP": cell(idx[("no DP", e)], "asr_avg_benign") if ("no DP", e) in idx else "n/a",
                     "(paper)": _ptext(paper.get((row, "ASR avg, no DP"))),
                     "avg ASR, DP": cell(idx[("DP", e)], "asr_avg_benign") if ("DP", e) in idx else "n/a",
                     "(paper) ": _ptext(paper.get((row, "ASR avg, DP")))})
    means = {dp: agg[agg.dp == dp].asr_avg_benign_mean.mean() for dp in ("no DP", "DP")}
    rows.append({"eps": "Average", "avg ASR, no DP": fmt_pct(means["no DP"]),
                 "(paper)": _ptext(paper.get(("Average", "ASR avg, no DP"))), "avg ASR, DP": fmt_pct(means["DP"]),
                 "(paper) ": _ptext(paper.get(("Average", "ASR avg, DP")))})
    dp_info, nodp_info = inp.runs.get("DP", {}), inp.runs.get("no DP", {})
    fed = (dp_info.get("config") or {}).get("federation", {})
    norm = _final_norm(dp_info)
    notes = [
        f"Defense: distributed noise (Fed-Safe, downlink noise 0.01, f = 1). DP: uplink clipping C = "
        f"{_num(fed.get('uplink_clip'))} ({DP_CLIP_TIMES_NORM} x the initial model's L2 norm; the DP run's final "
        f"global model has norm {norm:.1f}) and uplink noise s_U = {_num(fed.get('uplink_noise'))}. Attack: "
        f"PGD-{FS_ATTACK_STEPS}, alpha eps/4, random start (the paper does not state the attack of Table 2).",
        f"Privacy the accountant gives (PLD, composed over the rounds): with DP epsilon = {_epsilon(dp_info)}; "
        f"without DP epsilon = {_epsilon(nodp_info)}.",
        *_no_paper_note(inp.task, "fed-safe", "Table 2"),
    ]
    if ds == "Glioma":
        notes.append("Glioma is not in the paper's Table 2; its text says DP gave 'perfect defense with ASR=0.0' "
                     "at every eps (shown in the DP paper column).")
    table = Table("Fed-Safe Table 2: average ASR on benign clients without vs with DP", pd.DataFrame(rows),
                  tuple(notes))
    comps = [Comparison(f"eps {e:g}", idx[("DP", e)]["asr_avg_benign_mean"], idx[("no DP", e)]["asr_avg_benign_mean"],
                        idx[("DP", e)]["asr_avg_benign_std"], idx[("no DP", e)]["asr_avg_benign_std"])
             for e in FS_TABLE2_EPS if ("DP", e) in idx and ("no DP", e) in idx]
    ptxt = ""
    if ("Average", "ASR avg, no DP") in paper:
        ptxt = (f"average {paper[('Average', 'ASR avg, no DP')].text} -> "
                f"{paper[('Average', 'ASR avg, DP')].text} ({ds}).")
    elif ds == "Glioma":
        ptxt = "Glioma: ASR 0.0 with DP at every eps (text)."
    accs = {dp: inp.summary[inp.summary.dp == dp].groupby("seed")[["clean_acc"]].first() for dp in ("no DP", "DP")}
    verdicts = (
        compare("DP lowers the average ASR", comps, expect="lower", names=("DP", "no DP"), paper=ptxt),
        accuracy_verdict("DP costs no clean accuracy", accs, "DP", "no DP", None),
    )
    plot = agg.assign(eps_label=[f"{e:g}" for e in agg.eps_value])
    fig = figs.bars(plot, category="eps_label", series="dp", metric="asr_avg_benign", ylabel="avg ASR (benign)",
                    title=f"Fed-Safe Table 2: average ASR without / with DP — {run_label(inp)}")
    return Built((table,), (("table2", fig, "Average ASR on benign clients per attack eps, without and with DP"),),
                 verdicts, data=agg)


# -- Fed-Safe Figure 3 ------------------------------------------------------------------------------------------

# Fed-Safe, Section 4.3, text on Figure 3 (papers/000_9a91d1df02d57be5.txt line 113): distributed noise with 20% of
# the samples: ASR on benign clients 12.2% pathology, 9.7% meningioma ("MRI"), 0.0% glioma.
_FS_FIG3_TEXT = {"MRI": 0.097, "Glioma": 0.0, "Pathology": 0.122}


def _fs_fig3_trainings(base: ExperimentConfig) -> dict[str, tuple[str, ...]]:
    return {f"{m} f={f:g}": (*o, f"defense.fraction={f:g}") for m, o in _METHODS.items() for f in FS_FRACTIONS}


def _fs_fig3_measurements(seed: int) -> list[Measurement]:
    return [Measurement(f"{m} f={f:g}", AttackSpec(attack="pgd", eps=FS_TABLE1_EPS, alpha=FS_FIG3_ALPHA,
                                                   steps=FS_ATTACK_STEPS, start="random", seed=seed),
                        _tags(method=m, fraction=f), heatmap=f in (0.1, 1.0))
            for m in _METHODS for f in FS_FRACTIONS]


def _build_fs_fig3(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["method", "fraction"])
    ds = _dataset(inp.task, "fed-safe")
    fig = figs.line_panels(agg, x="fraction", series="method", x_as_percent=True,
                           xlabel="adversarial adaptation samples (% of the server set)",
                           panels=[("asr_avg_benign", "(a) ASR on benign clients"),
                                   ("asr_self", "(b) ASR on the adversarial client")],
                           title=f"Fed-Safe Figure 3: ASR vs adaptation samples (PGD-{FS_ATTACK_STEPS}, eps "
                                 f"{FS_TABLE1_EPS}, alpha {FS_FIG3_ALPHA}) — {run_label(inp)}")
    idx = {(r.method, r.fraction): r._asdict() for r in agg.itertuples()}
    rows = []
    for f in FS_FRACTIONS:
        paper = _FS_FIG3_TEXT.get(ds) if ds and math.isclose(f, 0.2) else None
        rows.append({"samples": f"{100 * f:g}%",
                     "AT: ASR benign": cell(idx[(AT, f)], "asr_avg_benign") if (AT, f) in idx else "n/a",
                     "AT: ASR self": cell(idx[(AT, f)], "asr_self") if (AT, f) in idx else "n/a",
                     "DN: ASR benign": cell(idx[(DN, f)], "asr_avg_benign") if (DN, f) in idx else "n/a",
                     "DN: ASR benign (paper text)": _paper(paper),
                     "DN: ASR self": cell(idx[(DN, f)], "asr_self") if (DN, f) in idx else "n/a",
                     "AT: clean acc": cell(idx[(AT, f)], "clean_acc") if (AT, f) in idx else "n/a",
                     "DN: clean acc": cell(idx[(DN, f)], "clean_acc") if (DN, f) in idx else "n/a"})
    table = Table("Fed-Safe Figure 3: ASR vs fraction of adversarial adaptation samples", pd.DataFrame(rows),
                  ("AT: adversarial training; DN: distributed noise (Fed-Safe). The fraction f selects that share of "
                   "the server data set for adaptation. The paper gives Figure 3 as a plot; its text gives one number "
                   "per dataset (DN at 20%: pathology 12.2%, meningioma 9.7%, glioma 0.0%). The attack is not stated: "
                   f"PGD-{FS_ATTACK_STEPS}, eps {FS_TABLE1_EPS}, alpha {FS_FIG3_ALPHA} here.",
                   *_no_paper_note(inp.task, "fed-safe", "Figure 3")))
    curves = {m: (list(g.fraction), list(g.asr_avg_benign_mean)) for m, g in agg.groupby("method", sort=False)}
    comps = [Comparison(f"{100 * f:g}%", idx[(DN, f)]["asr_avg_benign_mean"], idx[(AT, f)]["asr_avg_benign_mean"],
                        idx[(DN, f)]["asr_avg_benign_std"], idx[(AT, f)]["asr_avg_benign_std"])
             for f in FS_FRACTIONS if (DN, f) in idx and (AT, f) in idx]
    verdicts = (
        trend("More adaptation samples lower the ASR on benign clients", curves, expect="decreasing",
              xname="f", paper="'using more retraining samples in the global model leads to a lower attack success "
                               "rate in all scenarios' (Section 4.3)."),
        compare("Distributed noise needs fewer samples: lower ASR on benign clients than adversarial training at the "
                "same fraction", comps, expect="lower", names=("DN", "AT"),
                paper="'distributed noise outperformed adversarial training and achieved perfect defense with much "
                      "fewer samples'."),
    )
    return Built((table,), (("fig3", fig, "ASR on benign clients (a) and on the adversary (b) against the fraction "
                                          "of adaptation samples"),), verdicts, data=agg)


# -- the registry -----------------------------------------------------------------------------------------------

REPRODUCTIONS: dict[str, Reproduction] = {
    "fedsafe-table1": Reproduction("fedsafe-table1", "Fed-Safe Table 1: adversarial training vs distributed noise",
                                   "fed-safe", _fs_t1_trainings, _fs_t1_measurements, _build_fs_t1,
                                   "3 clients; no defense / adversarial training (downlink noise 0) / Fed-Safe "
                                   "(downlink noise 0.01), f = 1"),
    "fedsafe-table2": Reproduction("fedsafe-table2", "Fed-Safe Table 2: average ASR without vs with DP", "fed-safe",
                                   _fs_t2_trainings, _fs_t2_measurements, _build_fs_t2,
                                   "3 clients; Fed-Safe without / with uplink clipping and noise"),
    "fedsafe-fig3": Reproduction("fedsafe-fig3", "Fed-Safe Figure 3: ASR vs adaptation samples", "fed-safe",
                                 _fs_fig3_trainings, _fs_fig3_measurements, _build_fs_fig3,
                                 "3 clients; both defenses at f in 10 ... 100%"),
    "crn-table1": Reproduction("crn-table1", "CRN Table I: PGD-1+CRN10 vs PGD-20 vs PGD-40", "crn", _crn_trainings,
                               _crn_t1_measurements, _build_crn_t1, "3 clients, downlink noise 0.01, online CRN"),
    "crn-table2": Reproduction("crn-table2", "CRN Table II: error transfer rate (AETR)", "crn", _crn_trainings,
                               _crn_t2_measurements, _build_crn_t2, "3 clients, downlink noise 0.01, online CRN"),
    "crn-fig2": Reproduction("crn-fig2", "CRN Figure 2: ASR vs step size alpha", "crn", _crn_trainings,
                             _crn_fig2_measurements, _build_crn_fig2, "3 clients, downlink noise 0.01, online CRN"),
    "crn-fig3": Reproduction("crn-fig3", "CRN Figure 3: ASR vs budget eps", "crn", _crn_trainings,
                             _crn_fig3_measurements, _build_crn_fig3, "3 clients, downlink noise 0.01, online CRN"),
}
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(REPRODUCTIONS),
    "fedsafe": tuple(n for n in REPRODUCTIONS if n.startswith("fedsafe-")),  # the Fed-Safe paper
    "crn": tuple(n for n in REPRODUCTIONS if n.startswith("crn-")),  # the CRN paper
}


def resolve(names: Iterable[str | Reproduction]) -> tuple[Reproduction, ...]:
    """Reproductions by name (``all`` expands), or given as objects; duplicates dropped, order kept."""
    out: dict[str, Reproduction] = {}
    for n in names:
        if isinstance(n, Reproduction):
            out[n.name] = n
        elif n in GROUPS:
            out.update((k, REPRODUCTIONS[k]) for k in GROUPS[n])
        elif n in REPRODUCTIONS:
            out[n] = REPRODUCTIONS[n]
        else:
            raise ValueError(f"unknown reproduction {n!r}; known: {', '.join([*REPRODUCTIONS, *GROUPS])}")
    if not out:
        raise ValueError("no reproduction given")
    return tuple(out.values())


# -- the plan ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    task: str
    seed: int
    names: tuple[str, ...]  # "<reproduction>/<training>" that use it
    cfg: ExperimentConfig
    run_dir: Path
    trained: bool
    estimate_seconds: float


@dataclass(frozen=True)
class Job:
    reproduction: str
    task: str
    seed: int
    measurement: Measurement
    run_dir: Path


@dataclass
class Plan:
    """Every training run (unique by run directory) and attack evaluation of the reproductions, what is already
    cached, and what the rest is estimated to cost."""

    reproductions: tuple[Reproduction, ...]
    tasks: tuple[str, ...]
    options: Options
    cache: RunCache
    runs: dict[Path, PlannedRun]
    jobs: tuple[Job, ...]
    cached_evals: frozenset[tuple[Path, AttackSpec]]
    eval_estimates: dict[tuple[Path, AttackSpec], float]
    speed_source: str
    created: float = field(default_factory=time.time)

    def evaluations(self, seed: int | None = None) -> list[tuple[Path, AttackSpec]]:
        return list(dict.fromkeys((j.run_dir, j.measurement.spec) for j in self.jobs
                                  if seed is None or j.seed == seed))

    def cost(self, seed: int | None = 0) -> dict[str, Any]:
        """Runs and evaluations (of ``seed``, or all with None) still to do, and their estimated seconds."""
        runs = [r for r in self.runs.values() if seed is None or r.seed == seed]
        todo = [r for r in runs if not r.trained]
        evals = self.evaluations(seed)
        etodo = [e for e in evals if e not in self.cached_evals]
        per_run = statistics.mean(r.estimate_seconds for r in todo) if todo else 0.0
        return {"runs": len(runs), "runs_to_train": len(todo), "seconds_per_run": per_run,
                "train_seconds": sum(r.estimate_seconds for r in todo), "evaluations": len(evals),
                "evaluations_to_run": len(etodo), "attack_seconds": sum(self.eval_estimates[e] for e in etodo)}

    def describe(self) -> list[str]:
        """What one seed (and all seeds) costs, in sentences for the console."""
        one, every = self.cost(0), self.cost(None)
        q = " (QUICK: fewer rounds)" if self.options.quick else ""
        lines = [
            f"{', '.join(r.name for r in self.reproductions)} on {', '.join(self.tasks)}; profile "
            f"{self.options.profile}{q}; {self.options.seeds} seed(s).",
            f"One seed: {one['runs']} training run(s), {one['runs_to_train']} not yet cached x ~"
            f"{_duration(one['seconds_per_run'])} each = ~{_duration(one['train_seconds'])}; "
            f"{one['evaluations']} attack evaluation(s), {one['evaluations_to_run']} not yet cached "
            f"(~{_duration(one['attack_seconds'])}).",
        ]
        if self.options.seeds > 1:
            lines.append(f"All {self.options.seeds} seeds: {every['runs_to_train']} run(s) to train "
                         f"(~{_duration(every['train_seconds'])}), {every['evaluations_to_run']} evaluation(s) "
                         f"(~{_duration(every['attack_seconds'])}).")
        lines.append(f"Estimates: {self.speed_source}.")
        return lines


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _base_config(task: str, seed: int, options: Options, extra: Sequence[str] = ()) -> ExperimentConfig:
    overrides = [f"task.name={task}", *(QUICK_OVERRIDES if options.quick else ()), *options.overrides,
                 *extra, f"seed={seed}"]
    return load_config(profile=options.profile, overrides=overrides)


def _check_task(task: str, cfg: ExperimentConfig) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    root = task_data_root(cfg)
    if root is not None and not root.exists():
        raise ValueError(f"task {task}: its data is not at {root} (needs {TASKS[task].data_root}); set "
                         f"--set task.data_root=PATH or $FEDSAFE_DATA, or see `fedsafe data download`")


PAPER_TASKS = ("meningioma", "glioma", "brain-tumor-4class", "breastmnist", "pcam")


def expand_tasks(tasks: Sequence[str], options: Options = Options()) -> tuple[tuple[str, ...], dict[str, str]]:
    """``all`` -> every task of ``PAPER_TASKS`` whose data is present; returns (tasks, {skipped task: why})."""
    out: dict[str, None] = {}
    skipped: dict[str, str] = {}
    for t in tasks:
        if t != "all":
            out[t] = None
            continue
        for name in PAPER_TASKS:
            root = task_data_root(_base_config(name, 0, options))
            if root is not None and not root.exists():
                skipped[name] = f"no data at {root}"
            else:
                out[name] = None
    return tuple(out), skipped


def _macs_per_image(cfg: ExperimentConfig, memo: dict) -> float:
    key = (cfg.model.name, cfg.model.width, cfg.task.image_size, cfg.task.channels, cfg.task.name)
    if key not in memo:
        model = model_factory(cfg, num_classes=len(TASKS[cfg.task.name].class_names), in_channels=cfg.task.channels,
                              layout=False, device="cpu")()
        memo[key] = float(model.macs_per_image()) if hasattr(model, "macs_per_image") else math.nan
    return memo[key]


def _split_sizes(cfg: ExperimentConfig, n: int) -> tuple[int, int, int]:
    """(client training images, server images, global test images), as the splits would draw them (about)."""
    s = cfg.splits

    def size(v: float) -> int:
        return int(v) if v >= 1 else round(v * n)

    server, glob = size(s.server_size), size(s.global_test_size)
    return max(n - server - glob - s.num_clients * s.client_test_size, 0), server, glob


def _passes(cfg: ExperimentConfig, n: int) -> float:
    """Forward-backward image passes of a training run (training, server defense, online CRN, evaluation/3)."""
    tr, d, s = cfg.train, cfg.defense, cfg.splits
    n_train, n_server, n_glob = _split_sizes(cfg, n)
    passes = tr.rounds * tr.local_epochs * n_train
    if d.name == "client-adversarial-training":
        passes *= d.steps + 1
    per_adapt = d.fraction * n_server * (d.steps + d.epochs)
    if d.name == "adversarial-training":
        passes += tr.rounds * per_adapt
    elif d.name == "fed-safe":
        passes += (tr.rounds + 1) * s.num_clients * per_adapt
    if cfg.crn.enabled:
        j = cfg.crn.steps or tr.local_epochs
        passes += s.num_clients * sum(cfg.crn.windows) * j * s.client_test_size
    passes += tr.rounds * (n_glob + 2 * s.num_clients * s.client_test_size) / 3
    return passes


def _eval_passes(cfg: ExperimentConfig, spec: AttackSpec) -> float:
    """Image passes of one attack evaluation: every attacker's steps, its labels, and every target's clean and
    adversarial predictions (the once-per-run sanity checks and CRN replays are left out)."""
    s = cfg.splits
    return s.num_clients * s.client_test_size * (spec.steps + 1 + 2 * s.num_clients / 3)


def plan(reproductions: Iterable[str | Reproduction], *, tasks: Sequence[str], results: str | Path,
         options: Options = Options(), progress: Progress | None = None) -> Plan:
    """Resolve configurations, keys and caches; nothing is trained. Raises ValueError naming a missing data path
    or a bad setting."""
    reps = resolve(reproductions)
    tasks = tuple(dict.fromkeys(tasks))
    if not tasks:
        raise ValueError("no task given")
    cache = RunCache(results)
    runs: dict[Path, PlannedRun] = {}
    jobs: list[Job] = []
    macs: dict = {}
    for task in tasks:
        _check_task(task, _base_config(task, 0, options))
        for seed in range(options.seeds):
            base = _base_config(task, seed, options)
            for rep in reps:
                trainings = rep.trainings(base)
                rdirs: dict[str, Path] = {}
                for name, over in trainings.items():
                    cfg = _base_config(task, seed, options, over)
                    rd = cache.run_dir(cfg, progress=progress)
                    rdirs[name] = rd
                    if rd in runs:
                        runs[rd] = replace(runs[rd], names=(*runs[rd].names, f"{rep.name}/{name}"))
                        continue
                    runs[rd] = PlannedRun(task=task, seed=seed, names=(f"{rep.name}/{name}",), cfg=cfg, run_dir=rd,
                                          trained=RunDir(rd).is_complete(), estimate_seconds=math.nan)
                for m in rep.measurements(seed):
                    if m.training not in rdirs:
                        raise ValueError(f"{rep.name}: measurement on unknown training {m.training!r}")
                    jobs.append(Job(rep.name, task, seed, m, rdirs[m.training]))
    # estimates: MACs of every run at a speed measured on the finished runs of this plan (or a rough default)
    work = {rd: 3 * _passes(r.cfg, cache.task_size(r.cfg)) * _macs_per_image(r.cfg, macs) for rd, r in runs.items()}
    measured = _measured_speeds(cache, macs)
    speed = statistics.median(measured) if measured else _DEFAULT_MACS_PER_SECOND
    source = (f"{speed / 1e9:.1f} GMAC/s measured on {len(measured)} finished run(s)" if measured else
              f"a rough {speed / 1e9:.0f} GMAC/s (no finished run to measure yet)")
    runs = {rd: replace(r, estimate_seconds=work[rd] / speed) for rd, r in runs.items()}
    evals = list(dict.fromkeys((j.run_dir, j.measurement.spec) for j in jobs))
    cached = frozenset(e for e in evals if cache.cached_evaluation(
        e[0], e[1], precision=options.precision, batch_size=options.batch_size) is not None)
    est = {(rd, spec): 3 * _eval_passes(runs[rd].cfg, spec) * _macs_per_image(runs[rd].cfg, macs) / speed
           for rd, spec in evals}
    return Plan(reproductions=reps, tasks=tasks, options=options, cache=cache, runs=runs, jobs=tuple(jobs),
                cached_evals=cached, eval_estimates=est, speed_source=source)


def _measured_speeds(cache: RunCache, macs: dict) -> list[float]:
    """MAC/s of every finished run under ``RESULTS/runs``: the work :func:`_passes` counts for it over the
    seconds it took (its task's size from its data report)."""
    import yaml

    speeds = []
    for rd in sorted(cache.runs.glob("*/summary.json")) if cache.runs.is_dir() else []:
        r = RunDir(rd.parent)
        try:
            cfg = ExperimentConfig.model_validate(yaml.safe_load(r.config.read_text()))
            seconds = float(json.loads(r.summary.read_text())["seconds"])
            n = sum(json.loads(r.data_report.read_text())["kept"].values())
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
            continue
        if seconds > 0 and n > 0 and cfg.task.name in TASKS:
            speeds.append(3 * _passes(cfg, n) * _macs_per_image(cfg, macs) / seconds)
    return speeds


# -- execution --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """The outputs of one reproduction on one task."""

    reproduction: str
    task: str
    folder: Path
    markdown: Path
    manifest: Path
    built: Built


def execute(p: Plan, *, progress: Progress | None = None,
            on_trained: Callable[[PlannedRun, bool], None] | None = None) -> list[Written]:
    """Train what is not cached (each run resumes from its checkpoint), evaluate its attacks (cached ones are
    read back), then build and write every reproduction's outputs. ``on_trained(run, skipped)`` is called after
    each training run (a hook for progress, or for tests to interrupt)."""
    evaluations: dict[tuple[Path, AttackSpec], Evaluation] = {}
    o = p.options
    for rd, run in p.runs.items():
        outcome = p.cache.train(run.cfg, progress=progress)
        if on_trained is not None:
            on_trained(run, outcome.skipped)
        specs = list(dict.fromkeys(j.measurement.spec for j in p.jobs if j.run_dir == rd))
        if specs:
            for ev in p.cache.evaluate(run.cfg, specs, precision=o.precision, batch_size=o.batch_size,
                                       sanity=o.sanity, progress=progress):
                evaluations[(rd, ev.spec)] = ev
    written = []
    for rep in p.reproductions:
        for task in p.tasks:
            jobs = [j for j in p.jobs if j.reproduction == rep.name and j.task == task]
            written.append(_write(p, rep, task, jobs, evaluations))
    return written


def _run_info(rd: Path) -> dict[str, Any]:
    import yaml

    r = RunDir(rd)
    info: dict[str, Any] = {"run_dir": str(rd)}
    for name, path, loader in (("config", r.config, yaml.safe_load), ("summary", r.summary, json.loads),
                               ("privacy", r.privacy_report, json.loads), ("data_report", r.data_report, json.loads)):
        try:
            info[name] = loader(path.read_text())
        except (OSError, ValueError):
            info[name] = None
    return info


def _summary_row(job: Job, ev: Evaluation, info: dict[str, Any], options: Options) -> dict[str, Any]:
    spec, rec = job.measurement.spec, ev.record
    s = rec["summary"]
    summ = info.get("summary") or {}
    priv = info.get("privacy") or {}
    return {
        "reproduction": job.reproduction, "task": job.task, "seed": job.seed, "training": job.measurement.training,
        **job.measurement.tag(), "label": spec.label, "attack": spec.attack, "eps": spec.eps, "alpha": spec.alpha,
        "steps": spec.steps, "start": spec.start, **{k: s[k] for k in (
            "asr_self", "asr_avg_benign", "aasr", "aetr", "asr_self_literal", "asr_avg_benign_literal",
            "aasr_literal", "clean_acc", "attack_acc", "undefined_asr_cells", "undefined_aetr_cells")},
        "seconds_per_batch": rec["attack_seconds_per_batch"], "fb_passes_per_image": rec["fb_passes_per_image"],
        "crn_passes_per_image": rec["crn_passes_per_image"],
        "start_source": ", ".join(sorted(set(rec["start_source"].values()))),
        "global_acc": summ.get("global_acc", math.nan),
        "client_acc": float(np.mean(summ["client_final_acc"])) if summ.get("client_final_acc") else math.nan,
        "epsilon": _float(priv.get("pld", {}).get("epsilon")), "train_precision": summ.get("precision"),
        "attack_precision": rec.get("precision"), "profile": options.profile, "quick": options.quick,
        "run_dir": str(job.run_dir), "attack_key": ev.key,
    }


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def run_label(inp: BuildInput) -> str:
    syn = " (not real data)" if inp.task == "synthetic" else ""
    seeds = f", {inp.options.seeds} seeds" if inp.options.seeds > 1 else ""
    return f"{inp.task}{syn}, profile {inp.options.profile}{seeds}" + (", QUICK" if inp.quick else "")


def _setting(inp: BuildInput, rep: Reproduction) -> str:
    info = next(iter(inp.runs.values()), {})
    cfg, summ = info.get("config") or {}, info.get("summary") or {}
    model, tr = cfg.get("model", {}), cfg.get("train", {})
    size, ch = cfg.get("task", {}).get("image_size"), (summ.get("model") or {}).get("channels")
    quick = (" **QUICK run** (fewer rounds: " + ", ".join(QUICK_OVERRIDES) + "): not the papers' setting." if
             inp.quick else "")
    extra = f" Extra settings: {', '.join(inp.options.overrides)}." if inp.options.overrides else ""
    syn = " The task is synthetic (procedurally generated images, not real data)." if inp.task == "synthetic" else ""
    return (f"Task {inp.task}; profile {inp.options.profile} ({model.get('name')} width {model.get('width')}, "
            f"{size}x{size}x{ch}, {tr.get('rounds')} rounds x {tr.get('local_epochs')} local epochs, "
            f"{tr.get('optimizer')} lr {tr.get('lr')}, training precision {summ.get('precision')}); "
            f"{inp.options.seeds} seed(s){', mean ± std' if inp.options.seeds > 1 else ''}; attacks in "
            f"{inp.options.precision}, {inp.options.batch_size} images a batch; each client's attack set is its own "
            f"test set. Setting: {rep.setting}.{quick}{extra}{syn}")


def _heatmaps(jobs: list[Job], evaluations: dict) -> list[dict[str, Any]]:
    groups: dict[tuple, list[np.ndarray]] = {}
    for j in jobs:
        if not j.measurement.heatmap:
            continue
        ev = evaluations[(j.run_dir, j.measurement.spec)]
        spec = j.measurement.spec
        step = "" if spec.attack == "fgsm" else f", alpha {spec.alpha:g}"
        title = f"{j.measurement.training}: {spec.label}, eps {spec.eps:g}{step}"
        groups.setdefault((title, tuple(ev.record["matrices"]["attackers"])), []).append(
            np.asarray(ev.record["matrices"]["asr"], dtype=float))
    out = []
    for (title, attackers), mats in groups.items():
        stack = np.stack(mats)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(stack, axis=0) if not np.all(np.isnan(stack)) else stack[0]
        out.append({"title": title + (f" (mean of {len(mats)} seeds)" if len(mats) > 1 else ""),
                    "attackers": list(attackers), "metric": "ASR", "matrix": mean.tolist()})
    return out


def _write(p: Plan, rep: Reproduction, task: str, jobs: list[Job], evaluations: dict) -> Written:
    folder = p.cache.results / rep.name / task
    rows, frames = [], []
    infos: dict[Path, dict[str, Any]] = {}
    for j in jobs:
        ev = evaluations[(j.run_dir, j.measurement.spec)]
        if j.run_dir not in infos:
            infos[j.run_dir] = _run_info(j.run_dir)
        rows.append(_summary_row(j, ev, infos[j.run_dir], p.options))
        f = ev.frame.copy()
        for k, v in {"reproduction": rep.name, "task": task, "training": j.measurement.training,
                     **j.measurement.tag(), "profile": p.options.profile, "quick": p.options.quick,
                     "run_dir": str(j.run_dir)}.items():
            if k not in f.columns:  # a tag may repeat an attack setting (alpha): keep the frame's own column
                f.insert(0, k, [v] * len(f))
        frames.append(f)
    summary = pd.DataFrame(rows)
    runs = {}
    for j in jobs:
        if j.seed == 0 and j.measurement.training not in runs:
            runs[j.measurement.training] = infos[j.run_dir]
    inp = BuildInput(reproduction=rep, task=task, options=p.options, summary=summary, runs=runs)
    built = rep.build(inp)
    warnings = sorted({f"{Path(j.run_dir).name}: {w}" for j in jobs
                       for w in evaluations[(j.run_dir, j.measurement.spec)].record.get("sanity_warnings") or []})
    if warnings:  # Carlini et al.'s checks, run once per run by the transfer evaluation
        built = replace(built, notes=(*built.notes, "Sanity-check warnings (Carlini et al.): " + "; ".join(warnings)))
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "rows.csv", pd.concat(frames, ignore_index=True).to_csv(index=False))
    write_text(folder / "summary.csv", summary.to_csv(index=False))
    if built.data is not None:
        write_text(folder / "table.csv", built.data.to_csv(index=False))
    fig_entries = []
    for stem, fig, caption in built.figures:
        png, svg = figs.save_figure(fig, folder / stem)
        fig_entries.append({"name": stem, "png": png.name, "svg": svg.name, "caption": caption})
    verdicts = [v.to_dict() for v in built.verdicts]
    write_json(folder / "verdicts.json", verdicts)
    setting = _setting(inp, rep)
    md = _markdown(rep, inp, built, setting, fig_entries)
    md_path = folder / f"{rep.name}.md"
    write_text(md_path, md)
    results_root = p.cache.results.resolve()
    manifest = {
        "kind": "fedsafe-reproduction", "fedsafe_version": __version__, "name": rep.name, "title": rep.title,
        "paper": rep.paper, "task": task, "synthetic": task == "synthetic", "profile": p.options.profile,
        "seeds": p.options.seeds, "quick": p.options.quick, "overrides": list(p.options.overrides),
        "attack_precision": p.options.precision, "label": run_label(inp), "setting": setting,
        "tables": [{"title": t.title, "columns": [str(c) for c in t.frame.columns],
                    "rows": [[str(v) for v in r] for r in t.frame.itertuples(index=False)], "notes": list(t.notes)}
                   for t in built.tables],
        "figures": fig_entries, "verdicts": verdicts, "notes": list(built.notes),
        "heatmaps": _heatmaps(jobs, evaluations),
        "runs": {name: _relative(Path(info["run_dir"]), results_root) for name, info in runs.items()},
        "all_runs": sorted({_relative(j.run_dir, results_root) for j in jobs}),
        "files": {"rows": "rows.csv", "summary": "summary.csv", "table": "table.csv", "markdown": md_path.name,
                  "verdicts": "verdicts.json"},
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json(folder / "manifest.json", manifest)
    return Written(rep.name, task, folder, md_path, folder / "manifest.json", built)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path.resolve())


def _markdown(rep: Reproduction, inp: BuildInput, built: Built, setting: str, fig_entries: list[dict]) -> str:
    title = f"# {rep.title} — {inp.task}" + (" (QUICK)" if inp.quick else "")
    lines = [title, "", setting, ""]
    for t in built.tables:
        lines += [f"## {t.title}", "", markdown_table(t.frame), ""]
        lines += [*(f"{n}" for n in t.notes), ""] if t.notes else []
    if fig_entries:
        lines += ["## Figures", ""]
        lines += [f"![{f['caption']}]({f['png']}) ({f['svg']})" for f in fig_entries]
        lines.append("")
    lines += ["## Do the claims hold here?", "", *(v.markdown() for v in built.verdicts), ""]
    if built.notes:
        lines += [*built.notes, ""]
    lines += ["Files: `rows.csv` (every measured row: attacker x target x attack x seed), `summary.csv` (one row per "
              "attack configuration and seed), `table.csv` (mean and std over seeds), `verdicts.json`, "
              "`manifest.json`. Papers' numbers: `fedsafe.experiments.paper_numbers` (with their sources).", ""]
    return "\n".join(lines)
