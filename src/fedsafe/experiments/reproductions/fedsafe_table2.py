"""Fed-Safe paper, Table 2: the average ASR on benign clients of Fed-Safe without vs with DP (uplink clipping and
noise), at attack eps 0.01 ... 0.07 (PGD-20, alpha eps / 4; the paper does not state the attack). The noise shown
is the one each run used and the epsilon its accountant gives (the run's privacy report).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ...attacks.spec import AttackSpec
from ...build import model_factory
from ...config import ExperimentConfig
from ...data.tasks import TASKS
from .. import figures as figs
from ..delta import ConfigDelta
from ..paper_numbers import fedsafe_table_2, lookup
from ..runinfo import RunInfo
from ..verdicts import Comparison, accuracy_verdict, compare, fmt_pct
from .base import BuildInput, Built, Measurement, Reproduction, Table, tags
from .format import aggregate, cell, dataset, fmt_num, no_paper_note, paper_text, run_label
from .setups import FED_SAFE, FS_ATTACK_STEPS

__all__ = ["DP_CLIP_TIMES_NORM", "DP_UPLINK_NOISE", "EPS_VALUES", "FEDSAFE_TABLE2", "dp_clip"]

EPS_VALUES = (0.01, 0.03, 0.05, 0.07)
DP_UPLINK_NOISE = 0.001
DP_CLIP_TIMES_NORM = 5
FULL = ConfigDelta.of(defense={"fraction": 1.0})


def dp_clip(base: ExperimentConfig) -> float:
    """The uplink clip C of the DP runs: ``DP_CLIP_TIMES_NORM`` x the L2 norm of the initial model, rounded up
    (clipping the whole weights, SPEC 3, must not shrink a model that trains normally)."""
    spec = TASKS[base.task.name]
    model = model_factory(base, num_classes=len(spec.class_names), in_channels=base.task.channels, layout=False,
                          device="cpu")()
    norm = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))
    return float(math.ceil(DP_CLIP_TIMES_NORM * norm))


def _trainings(base: ExperimentConfig) -> dict[str, ConfigDelta]:
    dp = ConfigDelta.of(federation={"uplink_clip": dp_clip(base), "uplink_noise": DP_UPLINK_NOISE})
    return {"no DP": FED_SAFE | FULL, "DP": FED_SAFE | FULL | dp}


def _measurements(seed: int) -> list[Measurement]:
    return [Measurement(dp, AttackSpec(attack="pgd", eps=e, alpha=e / 4, steps=FS_ATTACK_STEPS, start="random",
                                       seed=seed), tags(dp=dp, eps_value=e))
            for dp in ("no DP", "DP") for e in EPS_VALUES]


def _epsilon(info: RunInfo | None) -> str:
    priv = info.privacy if info is not None else {}
    pld = priv.get("pld", {})
    e = pld.get("epsilon")
    if e is None:
        return "n/a"
    up, down = pld.get("epsilon_uplink"), pld.get("epsilon_downlink")
    return f"{fmt_num(e)} (uplink {fmt_num(up)}, downlink {fmt_num(down)}; delta {priv.get('delta')})"


def _final_norm(info: RunInfo | None) -> float:
    """The L2 norm of the run's last global model (NaN when the run or the file is not here)."""
    if info is None or info.config is None:
        return math.nan
    store, rounds = info.store(), info.config.train.rounds
    if not store.dir.global_model(rounds).is_file():
        return math.nan
    state = store.load_global(rounds)
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in state.values() if v.is_floating_point()))


def _paper(ds: str | None) -> dict[tuple[str, str], Any]:
    if ds in ("MRI", "Pathology"):
        return {(p.row, p.column): p for p in fedsafe_table_2(ds)}
    if ds == "Glioma":
        g = lookup(paper="fed-safe", table="text", dataset="Glioma", row="every eps", column="ASR avg, DP")
        return {(f"eps {e:g}", "ASR avg, DP"): g for e in EPS_VALUES}
    return {}


def _notes(inp: BuildInput, ds: str | None) -> list[str]:
    dp_info, nodp_info = inp.runs.get("DP"), inp.runs.get("no DP")
    noise = dp_info.noise() if dp_info is not None and dp_info.exists else None
    clip = fmt_num(noise.clip if noise is not None else None)
    s_u = fmt_num(noise.uplink if noise is not None else None)
    notes = [
        f"Defense: distributed noise (Fed-Safe, downlink noise 0.01, f = 1). DP: uplink clipping C = "
        f"{clip} ({DP_CLIP_TIMES_NORM} x the initial model's L2 norm; the DP run's final "
        f"global model has norm {_final_norm(dp_info):.1f}) and uplink noise s_U = {s_u}. Attack: "
        f"PGD-{FS_ATTACK_STEPS}, alpha eps/4, random start (the paper does not state the attack of Table 2).",
        f"Privacy the accountant gives (PLD, composed over the rounds): with DP epsilon = {_epsilon(dp_info)}; "
        f"without DP epsilon = {_epsilon(nodp_info)}.",
        *no_paper_note(inp.task, "fed-safe", "Table 2"),
    ]
    if ds == "Glioma":
        notes.append("Glioma is not in the paper's Table 2; its text says DP gave 'perfect defense with ASR=0.0' "
                     "at every eps (shown in the DP paper column).")
    return notes


def _build(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["dp", "eps_value"])
    ds = dataset(inp.task, "fed-safe")
    paper = _paper(ds)
    idx = {(r.dp, r.eps_value): r._asdict() for r in agg.itertuples()}
    rows = []
    for e in EPS_VALUES:
        row = f"eps {e:g}"
        rows.append({"eps": f"{e:g}",
                     "avg ASR, no DP": cell(idx[("no DP", e)], "asr_avg_benign") if ("no DP", e) in idx else "n/a",
                     "(paper)": paper_text(paper.get((row, "ASR avg, no DP"))),
                     "avg ASR, DP": cell(idx[("DP", e)], "asr_avg_benign") if ("DP", e) in idx else "n/a",
                     "(paper) ": paper_text(paper.get((row, "ASR avg, DP")))})
    means = {dp: agg[agg.dp == dp].asr_avg_benign_mean.mean() for dp in ("no DP", "DP")}
    rows.append({"eps": "Average", "avg ASR, no DP": fmt_pct(means["no DP"]),
                 "(paper)": paper_text(paper.get(("Average", "ASR avg, no DP"))), "avg ASR, DP": fmt_pct(means["DP"]),
                 "(paper) ": paper_text(paper.get(("Average", "ASR avg, DP")))})
    table = Table("Fed-Safe Table 2: average ASR on benign clients without vs with DP", pd.DataFrame(rows),
                  tuple(_notes(inp, ds)))
    comps = [Comparison(f"eps {e:g}", idx[("DP", e)]["asr_avg_benign_mean"], idx[("no DP", e)]["asr_avg_benign_mean"],
                        idx[("DP", e)]["asr_avg_benign_std"], idx[("no DP", e)]["asr_avg_benign_std"])
             for e in EPS_VALUES if ("DP", e) in idx and ("no DP", e) in idx]
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


FEDSAFE_TABLE2 = Reproduction("fedsafe-table2", "Fed-Safe Table 2: average ASR without vs with DP", "fed-safe",
                              _trainings, _measurements, _build)
