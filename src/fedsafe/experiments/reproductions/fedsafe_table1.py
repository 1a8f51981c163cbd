"""Fed-Safe paper, Table 1: ASR self / avg of adversarial training vs distributed noise (Fed-Safe), per PGD step
(the paper's "Step" column), plus plain FedAvg for reference and the clean accuracy and cost of each method.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from ...attacks.spec import AttackSpec
from .. import figures as figs
from ..delta import ConfigDelta
from ..paper_numbers import fedsafe_table_1
from ..verdicts import Comparison, accuracy_verdict, compare, fmt_pct
from .base import BuildInput, Built, Measurement, Reproduction, Table, tags
from .format import aggregate, dataset, fmt_frac, no_paper_note, run_label, seed_std
from .setups import ADV_TRAINING, AT, DN, FED_SAFE, FS_ATTACK_STEPS, FS_EPS, NO_DEFENSE, NONE

__all__ = ["FEDSAFE_TABLE1", "STEPS"]

STEPS = (0.005, 0.012, 0.017, 0.05)
"""The paper's "Step" column: PGD's step size alpha."""
FULL = ConfigDelta.of(defense={"fraction": 1.0})


def _trainings(base) -> dict[str, ConfigDelta]:
    return {NONE: NO_DEFENSE, AT: ADV_TRAINING | FULL, DN: FED_SAFE | FULL}


def _measurements(seed: int) -> list[Measurement]:
    return [Measurement(method, AttackSpec(attack="pgd", eps=FS_EPS, alpha=a, steps=FS_ATTACK_STEPS,
                                           start="random", seed=seed), tags(method=method, step=a))
            for method in (NONE, AT, DN) for a in STEPS]


def _paper(ds: str | None) -> dict[tuple[str, str, str], float]:
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


def _accuracy_table(inp: BuildInput) -> tuple[Table, dict[str, pd.DataFrame]]:
    acc_rows, accs = [], {}
    for method in (NONE, AT, DN):
        sub = inp.summary[inp.summary.method == method]
        if sub.empty:
            continue
        per_seed = sub.groupby("seed")[["clean_acc", "global_acc", "client_acc"]].first()
        accs[method] = per_seed
        info = inp.runs.get(method)
        cost = (info.privacy if info is not None else {}).get("defense_cost", {})
        acc_rows.append({"method": method,
                         "clean acc (clients, attack sets)": fmt_pct(per_seed.clean_acc.mean(),
                                                                     seed_std(per_seed.clean_acc)),
                         "global model acc (global test)": fmt_pct(per_seed.global_acc.mean(),
                                                                   seed_std(per_seed.global_acc)),
                         "server defense passes": f"{cost.get('server', {}).get('passes', 0):.0f}",
                         "training wall s": f"{cost.get('wall_seconds', math.nan):.0f}"})
    table = Table("Clean accuracy and defense cost", pd.DataFrame(acc_rows),
                  ("Clean accuracy: every client's final model on the attackers' test sets (mean over (attacker, "
                   "target)). The paper reports no clean accuracy for Table 1.",))
    return table, accs


def _build(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["method", "step"])
    ds = dataset(inp.task, "fed-safe")
    paper = _paper(ds)
    idx = {(r.method, r.step): r._asdict() for r in agg.itertuples()}
    rows = []
    for step in STEPS:
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
                  f" eps {FS_EPS})", pd.DataFrame(rows),
                  (f"The paper gives the step but not eps or the number of steps: eps {FS_EPS} and "
                   f"{FS_ATTACK_STEPS} steps here. ASR self: the attacker against its own model; avg: mean over the "
                   "benign clients. Adversarial training: downlink noise 0, every client gets the same model; "
                   "distributed noise: downlink noise 0.01, each client its own adapted copy. No defense: plain "
                   "FedAvg (not in the paper), for reference.", *no_paper_note(inp.task, "fed-safe", "Table 1")))
    acc_table, accs = _accuracy_table(inp)
    steps = [f"step {s:g}" for s in STEPS]

    def comps(metric: str, a: str, b: str) -> list[Comparison]:
        return [Comparison(w, idx[(a, s)][f"{metric}_mean"], idx[(b, s)][f"{metric}_mean"],
                           idx[(a, s)][f"{metric}_std"], idx[(b, s)][f"{metric}_std"])
                for w, s in zip(steps, STEPS, strict=True) if (a, s) in idx and (b, s) in idx]

    pv = ""
    if ds:
        pv = "avg ASR AT vs DN: " + ", ".join(
            f"step {s:g}: {paper.get((f'step {s:g}', 'adversarial training', 'ASR avg'), math.nan):.2f} vs "
            f"{paper.get((f'step {s:g}', 'distributed noise', 'ASR avg'), math.nan):.2f}" for s in STEPS)
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


FEDSAFE_TABLE1 = Reproduction("fedsafe-table1", "Fed-Safe Table 1: adversarial training vs distributed noise",
                              "fed-safe", _trainings, _measurements, _build)
