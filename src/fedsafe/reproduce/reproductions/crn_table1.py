"""CRN paper, Table I (Section IV.C): clean accuracy, AASR and attack time per batch of PGD-1 + CRN10, PGD-20 and
PGD-40 at eps 0.05, alpha 0.001, on the CRN run (:data:`~.setups.CRN_RUN`).

Neither paper gives the CRN step size, and it decides the headline (design §7): PGD-1 + CRN10 is reported with the CRN
step at eps / j (the run's online buffers: R x j steps that can cross the ball many times) and at the attack's alpha
(0.001, replayed from the kept received copies). Each comes with the compute-matched control that isolates the
cross-round effect: the same centred step loop, the same R x j steps at the same step size, from zero, on the
attacker's final model alone (``Start.crn(R, final=True)``), then the same final PGD-1 step. The verdicts say under
which CRN step "PGD-1 + CRN10 beats PGD-40" holds, and whether accumulating over rounds beats the same steps on one
model. The paper's numbers are shown only beside rows of its own settings (same label).

Feasible baselines (design §7): the papers' alpha 0.001 moves PGD-20 / PGD-40 at most 0.02 / 0.04 inside eps 0.05, so
"CRN beats PGD-K" is partly a step-budget effect; PGD-K is also run at Madry et al.'s step 2.5 eps / K
(:func:`madry_alpha`, rows "PGD-40, alpha 2.5eps/K"), and every "beats" verdict is stated against both baselines.
Full cost: gradient passes an image at attack time and in total (:func:`passes`): CRN's own R x j passes an image are
paid during training (counted in total), the control pays them at attack time; the speed-up is stated on attack time
(seconds a batch, a paired test) and on total passes (exact counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ...attacks.spec import DEFAULT_ALPHA, DEFAULT_EPS, DEFAULT_WINDOWS, AttackSpec, Start
from ...report import figures as figs
from ...training.delta import ConfigDelta
from ...verdicts.claims import Verdict, compare
from ..costs import gradient_passes
from ..paper_numbers import crn_table_1
from .base import BuildInput, Built, Measurement, Reproduction, Table, tags
from .format import (
    METRICS,
    arms,
    attack_means,
    cell,
    comparison,
    fmt_seconds,
    no_paper_note,
    not_learned_note,
    paper_dataset,
    paper_text,
    run_label,
)
from .setups import CRN_RUN

__all__ = ["CRN_TABLE1", "EPS_OVER_J", "MADRY", "MADRY_STEP", "PGD_STEPS", "control_label", "crn_label", "madry_alpha",
           "madry_label", "numbers", "paper_numbers", "passes", "specs"]

PGD_STEPS = (20, 40)
EPS_OVER_J = "eps/j"
"""The CRN step of the run's own online buffers (``crn.alpha`` unset: eps / j)."""
MADRY_STEP = 2.5
"""Madry et al. (2018)'s step rule: alpha = 2.5 eps / K, so that K steps can cross the eps-ball (the papers' alpha
0.001 moves PGD-20 at most 0.02 inside eps 0.05: a baseline that cannot reach the budget)."""
MADRY = "alpha 2.5eps/K"


def madry_alpha(eps: float, steps: int) -> float:
    """2.5 eps / K (at most eps: a step never leaves the ball). ``madry_alpha(0.05, 40)`` = 0.003125."""
    return min(eps, MADRY_STEP * eps / steps)


def madry_label(steps: int) -> str:
    """"PGD-40, alpha 2.5eps/K": PGD-K from a random start at Madry et al.'s step."""
    return f"PGD-{steps}, {MADRY}"


def crn_label(window: int, step: str) -> str:
    """"PGD-1+CRN10, step eps/j": PGD-1 from the CRN of the received copies, CRN step ``step``."""
    return f"PGD-1+CRN{window}, step {step}"


def control_label(window: int, step: str) -> str:
    """"final-model control, step eps/j": PGD-1 after the same CRN steps run on the final model alone."""
    return f"final-model control, step {step}"


def specs(*, windows: Sequence[int] = DEFAULT_WINDOWS, eps: float = DEFAULT_EPS, alpha: float = DEFAULT_ALPHA,
          pgd_steps: Sequence[int] = PGD_STEPS, seed: int = 0, controls: bool = True,
          madry: bool = True) -> dict[str, AttackSpec]:
    """label -> spec: PGD-1 from the longest window's CRN (at the attack's eps) with the CRN step at eps / j and at
    ``alpha``, their final-model controls (``controls``), then PGD-k from a random start at ``alpha`` (the papers'
    setting) and, with ``madry``, at alpha 2.5 eps / k (:func:`madry_alpha`: a baseline that can cross the ball)."""
    long = max(windows)
    steps = {EPS_OVER_J: None, f"{alpha:g}": alpha}
    out = {crn_label(long, name): AttackSpec(attack="pgd", eps=eps, alpha=alpha, steps=1,
                                             start=Start.crn(long, eps=eps, alpha=a), seed=seed)
           for name, a in steps.items()}
    if controls:
        out |= {control_label(long, name): AttackSpec(attack="pgd", eps=eps, alpha=alpha, steps=1,
                                                      start=Start.crn(long, eps=eps, alpha=a, final=True), seed=seed)
                for name, a in steps.items()}
    for k in pgd_steps:
        out[f"PGD-{k}"] = AttackSpec(attack="pgd", eps=eps, alpha=alpha, steps=k, start="random", seed=seed)
    if madry:
        out |= {madry_label(k): AttackSpec(attack="pgd", eps=eps, alpha=madry_alpha(eps, k), steps=k, start="random",
                                           seed=seed) for k in pgd_steps}
    return out


def _step_of(label: str) -> str:
    return label.rpartition("step ")[2] if ", step " in label else ""


def measurements(seed: int, **kw) -> list[Measurement]:
    """The measurements of :func:`specs` on the training ``"crn"`` (tags: row, crn_step, models)."""
    return [Measurement("crn", spec, tags(row=label, crn_step=_step_of(label),
                                          models="final" if spec.start.final else  # type: ignore[union-attr]
                                          "received" if spec.window else ""))
            for label, spec in specs(seed=seed, **kw).items()]


def _trainings(base) -> dict[str, ConfigDelta]:
    return {"crn": CRN_RUN}


def paper_numbers(ds: str | None) -> dict:
    """The paper's numbers for its dataset ``ds`` (empty for None: a task the paper did not use)."""
    return crn_table_1(ds) if ds else {}


def _paper_row(paper: dict, g: pd.DataFrame) -> dict:
    """The paper's cells of a row: by the spec's label ("PGD-1+CRN10"), never for a final-model control or a
    baseline at another step than the paper's (Madry's)."""
    if "models" in g and g.models.iloc[0] == "final" or "row" in g and str(g.row.iloc[0]).endswith(MADRY):
        return {}
    return paper.get(g.label.iloc[0], {}) if "label" in g else {}


def numbers(summary: pd.DataFrame, paper: dict) -> pd.DataFrame:
    """One row per attack (means over the summary's seeds) beside the paper's values (NaN: not its setting)."""
    rows = []
    for label, g in summary.groupby("row", sort=False):
        p = _paper_row(paper, g)
        rows.append({"attack": label, "acc": g.clean_acc.mean(), "acc_paper": _value(p, "ACC"),
                     "aasr": g.aasr.mean(), "aasr_paper": _value(p, "AASR"),
                     "asr_avg_benign": g.asr_avg_benign.mean(), "asr_self": g.asr_self.mean(),
                     "seconds_per_batch": g.seconds_per_batch.mean(), "seconds_paper": _value(p, "time"),
                     **dict(zip(("attack_passes_per_image", "total_passes_per_image"), passes(g), strict=True)),
                     "crn_passes_per_image": int(g.crn_passes_per_image.iloc[0]),
                     "start_source": g.start_source.iloc[0]})
    return pd.DataFrame(rows)


def _value(cells: dict, column: str) -> float:
    return cells[column].value if column in cells else math.nan


def _final(sub: pd.DataFrame) -> bool:
    return "models" in sub and sub.models.iloc[0] == "final"


def passes(sub: pd.DataFrame) -> tuple[int, int]:
    """(at attack time, in total) gradient passes an image of a row's attack (:func:`~..costs.gradient_passes`): its
    CRN steps count at attack time only on the final model (the control); in total always."""
    return gradient_passes(int(sub.fb_passes_per_image.iloc[0]), int(sub.crn_passes_per_image.iloc[0]),
                           crn_at_attack_time=_final(sub))


PASS_COLUMNS = ("attack_passes_per_image", "total_passes_per_image")


def _pass_columns(summary: pd.DataFrame) -> dict[str, list[int]]:
    """:data:`PASS_COLUMNS` of every summary row (:func:`passes` of each row on its own)."""
    counts = [passes(summary.iloc[[i]]) for i in range(len(summary))]
    return {name: [c[k] for c in counts] for k, name in enumerate(PASS_COLUMNS)}


def _passes_text(sub: pd.DataFrame, total: bool) -> str:
    """"1", "51 (1 + 50 CRN in training)", "51 (1 + 50 CRN on the final model)", "40"."""
    attack, n = int(sub.fb_passes_per_image.iloc[0]), int(sub.crn_passes_per_image.iloc[0])
    final = _final(sub)
    if n == 0 or not (total or final):
        return str(attack)
    return f"{attack + n} ({attack} + {n} CRN {'on the final model' if final else 'in training'})"


def _short(label: str) -> str:
    """A bar's label: "CRN10 eps/j", "control eps/j", "PGD-40", "PGD-40 2.5eps/K"."""
    if label.startswith("final-model control"):
        return f"control {_step_of(label)}"
    return label.replace("PGD-1+", "").replace(", step ", " ").replace(", alpha ", " ")


def _verdicts(idx: dict, labels: list[str], paper: dict, ds: str | None) -> list[Verdict]:
    crn_rows = [r for r in labels if r.startswith("PGD-1+CRN")]
    out = []
    ptxt = ""
    if ds and "PGD-40" in paper and "PGD-1+CRN10" in paper:
        pc, po = paper["PGD-1+CRN10"], paper["PGD-40"]
        ptxt = (f"AASR {pc['AASR'].text} vs {po['AASR'].text}, {po['time'].value / pc['time'].value:.0f}x faster "
                f"({ds}); the CRN step is not stated.")
    for other in ("PGD-40", "PGD-20", *(r for r in labels if r.endswith(MADRY))):
        if other not in idx:
            continue
        for row in crn_rows:
            out.append(compare(f"{row.partition(',')[0]} beats {other} in AASR with the CRN step at {_step_of(row)}",
                               [comparison("AASR", idx, row, other, "aasr")], expect="higher",
                               names=(row.partition(",")[0], other), paper=ptxt if other == "PGD-40" else ""))
    window = crn_rows[0].partition("CRN")[2].partition(",")[0] if crn_rows else ""
    for row in crn_rows:
        step = _step_of(row)
        control = control_label(int(window), step) if window else ""
        if control in idx:
            out.append(compare(f"Accumulating over rounds beats the same steps on the final model alone (CRN step "
                               f"{step})", [comparison("AASR", idx, row, control, "aasr"),
                                            comparison("ASR benign", idx, row, control, "asr_avg_benign")],
                               expect="higher", names=("rounds", "final model only")))
    if "PGD-40" in idx and crn_rows:
        out.append(compare("PGD-1+CRN crafts a batch faster than PGD-40 (attack time; the CRN steps are paid during "
                           "training)", [comparison(f"CRN step {_step_of(r)}", idx, r, "PGD-40", "seconds_per_batch")
                                         for r in crn_rows], expect="lower", names=("PGD-1+CRN", "PGD-40"),
                           fmt=fmt_seconds))
    return out


def _paper_speedup(paper: dict, ds: str | None) -> str:
    if not (ds and "PGD-40" in paper and "PGD-1+CRN10" in paper):
        return ""
    pc, po = paper["PGD-1+CRN10"], paper["PGD-40"]
    return (f"{po['time'].value:g} s vs {pc['time'].value:g} s a batch on a GPU ({ds}): "
            f"{po['time'].value / pc['time'].value:.0f}x faster, attack time only.")


def _speedup_verdict(idx: dict, costs: dict[str, tuple[float, int, int]], crn_rows: list[str],
                     paper: str) -> list[Verdict]:
    """"PGD-1+CRN10 is cheaper than PGD-40" in gradient passes an image in total (CRN's R x j passes during training
    counted; the attack-time claim is :func:`_verdicts`' last); the speed-ups on both counts and on time beside it.
    ``costs``: row -> (mean seconds a batch, passes at attack time, passes in total)."""
    if "PGD-40" not in costs or not crn_rows:
        return []
    s40, _, total40 = costs["PGD-40"]
    ratios = []
    for r in crn_rows:
        s, at, total = costs[r]
        time = f"{s40 / s:.0f}x" if s > 0 else "n/a"
        ratios.append(f"CRN step {_step_of(r)}: PGD-40 / PGD-1+CRN10 = {total40 / total:.2f}x in passes in total "
                      f"({total40} vs {total}), {total40 / max(at, 1):.0f}x at attack time ({total40} vs {at}), "
                      f"{time} in seconds a batch")
    points = [comparison(f"CRN step {_step_of(r)}", idx, r, "PGD-40", "total_passes_per_image") for r in crn_rows]
    return [compare("PGD-1+CRN10 costs fewer gradient passes an image than PGD-40, counting CRN's R x j passes "
                    "during training", points, expect="lower", names=("PGD-1+CRN10", "PGD-40"),
                    fmt=lambda x, _std=math.nan: f"{x:.0f}",
                    paper=" ".join(t for t in (paper, "Here: " + "; ".join(ratios) + ".") if t))]


def _build(inp: BuildInput) -> Built:
    agg = attack_means(inp.summary, ["row"])
    summary = inp.summary.assign(**_pass_columns(inp.summary))  # exact counts, for the speed-up verdict
    idx = arms(summary, ["row"], [*METRICS, *PASS_COLUMNS])
    ds = paper_dataset(inp, "crn")
    paper = paper_numbers(ds)
    rows = []
    for r in agg.itertuples():
        d, sub = r._asdict(), inp.summary[inp.summary.row == r.row]
        p = _paper_row(paper, sub)
        crn_s = sub.crn_seconds.mean() if "crn_seconds" in sub else math.nan
        final = "models" in sub and sub.models.iloc[0] == "final"
        rows.append({
            "attack": r.row, "ACC": cell(d, "clean_acc"), "ACC (paper)": paper_text(p.get("ACC")),
            "AASR": cell(d, "aasr"), "AASR (paper)": paper_text(p.get("AASR")),
            "ASR benign": cell(d, "asr_avg_benign"),
            "s/batch": cell(d, "seconds_per_batch", fmt_seconds) + (f" +{fmt_seconds(crn_s)}" if final else ""),
            "s/batch (paper, GPU)": paper_text(p.get("time")),
            "passes/image at attack": _passes_text(sub, total=False),
            "passes/image in total": _passes_text(sub, total=True),
        })
    eps, alpha = float(inp.summary.eps.iloc[0]), float(inp.summary.alpha.iloc[0])
    table = Table(f"CRN Table I: clean accuracy, AASR and attack time (eps {eps:g}, alpha {alpha:g})",
                  pd.DataFrame(rows),
                  ("ACC: the clients' clean accuracy on the attack sets; AASR: ASR averaged over every (attacker, "
                   "target); s/batch: wall seconds to craft one attacker's batch here (the paper: a GPU; a final-"
                   "model control adds its CRN steps' seconds, paid at attack time: '+'); passes/image: gradient "
                   "(forward+backward) passes an image at attack time (the attack's steps; a final-model control's "
                   "R x j CRN steps too) and in total (a CRN start's R x j steps on the received copies, paid during "
                   "training, included); ASR self is in table.csv. PGD-K, alpha 2.5eps/K: Madry et al.'s step, so "
                   "that every baseline can cross the eps-ball (the paper's alpha moves PGD-K at most K x alpha); "
                   "the paper's numbers stand beside its own alpha only. CRN step "
                   "eps/j: the run's online buffers (j = the local epochs); CRN step "
                   f"{alpha:g}: the attack's own step, replayed from the received copies the run kept. The paper "
                   "does not state its CRN step: its numbers are shown beside both. Final-model control: the same "
                   "centred CRN loop (R x j steps, the same step, from zero) on the attacker's final model alone, "
                   "then the same PGD-1 step: what accumulating over the rounds' received copies adds over the same "
                   "steps on one model.", *not_learned_note(inp.summary),
                   *no_paper_note(inp, "crn", "CRN Table I")))
    cost = {r: passes(inp.summary[inp.summary.row == r]) for r in agg.row}
    agg = agg.assign(attack_passes_per_image=[cost[r][0] for r in agg.row],
                     total_passes_per_image=[cost[r][1] for r in agg.row])
    plot = agg.assign(series="ours", short=[_short(r) for r in agg.row])
    if ds:
        plot["paper"] = [_value(_paper_row(paper, inp.summary[inp.summary.row == r]), "AASR") for r in plot.row]
    fig = figs.bars(plot, category="short", series="series", metric="aasr", ylabel="AASR",
                    title=f"CRN Table I: AASR — {run_label(inp)}", paper="paper" if ds else None)
    return Built((table,), (("table1", fig, "AASR of each attack (hatched: the paper's)"),),
                 (*_verdicts(idx, list(agg.row), paper, ds),
                  *_speedup_verdict(idx, {r.row: (r.seconds_per_batch_mean, *cost[r.row]) for r in agg.itertuples()},
                                    [r for r in agg.row if r.startswith("PGD-1+CRN")], _paper_speedup(paper, ds))),
                 data=agg)


CRN_TABLE1 = Reproduction("crn-table1", "CRN Table I: PGD-1+CRN10 vs PGD-20 vs PGD-40", "crn", _trainings,
                          measurements, _build,
                          note="PGD-1+CRN10 with the CRN step at eps/j and at the attack's alpha, each beside its "
                               "final-model control (same steps, same step size, one model)", min_seeds=5)
