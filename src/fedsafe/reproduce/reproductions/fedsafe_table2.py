"""Fed-Safe paper, Table 2: the average ASR on benign clients of Fed-Safe without uplink noise, with the papers'
"DP" setting, and with noise that really is DP, at attack eps 0.01 ... 0.07 (PGD-20, alpha eps / 4; the paper does
not state the attack). Three trainings a seed (the one without noise is Table 1's distributed-noise run), and the
same three on a Dirichlet(0.5) partition as a clearly labelled SENSITIVITY (the papers' shard split can leave too
few seeds where both arms learned, design §11): six in all.

* **papers' setting**: uplink clip C = 5 x the initial model's L2 norm and s_U = 0.001, as the papers set it by
  hand. Its accounted epsilon is ~1e6 (design §4): it is shown with that epsilon and never called "DP".
* **epsilon <= 10 arm**: the same C with s_U from :func:`fedsafe.privacy.noise_for_target` so that the RDP accountant
  gives epsilon <= 10 at delta 1e-5 under NbAFL's sensitivity 2C/m, for the split this seed trains on (its smallest
  client m and weights). Its epsilon under the unconditional sensitivity 2C is shown too.

A "DP" label appears only beside an arm whose accounted epsilon (PLD, every seed) is at most 10 at delta <= 1e-5
(:func:`fedsafe.privacy.dp_label`), naming the sensitivity. An arm whose model did not learn is flagged and left out
of every verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from ...attacks.spec import AttackSpec
from ...build import model_factory, prepare_data, run_noise_scale
from ...config import ExperimentConfig
from ...data.tasks import TASKS
from ...privacy import DP_MAX_EPSILON, SENSITIVITIES, dp_label, noise_for_target
from ...report import figures as figs
from ...runs.run import Run
from ...training.delta import ConfigDelta
from ...verdicts.claims import compare, fmt_pct
from ..paper_numbers import fedsafe_table_2, lookup
from .base import BuildInput, Built, Measurement, Reproduction, Table, tags
from .format import (
    accuracy_claim,
    arms,
    attack_means,
    cell,
    comparison,
    fmt_num,
    marks,
    no_paper_note,
    not_learned_note,
    paper_dataset,
    paper_text,
    run_label,
)
from .setups import (
    DIRICHLET,
    FED_SAFE,
    FS_ATTACK_STEPS,
    FS_FRACTION,
    SENSITIVITY_SUFFIX,
    at_fraction,
    sensitivity_note,
    with_delta,
)

__all__ = ["ARMS", "DP_CLIP_TIMES_NORM", "DP_TARGET", "DP_UPLINK_NOISE", "EPS_VALUES", "FEDSAFE_TABLE2", "NO_NOISE",
           "PAPERS", "SENSITIVITY", "arm_label", "dp_clip", "dp_noise"]

EPS_VALUES = (0.01, 0.03, 0.05, 0.07)
DP_UPLINK_NOISE = 0.001
DP_CLIP_TIMES_NORM = 5
NO_NOISE, PAPERS, DP_TARGET = "no uplink noise", "papers' setting", "noise for epsilon <= 10"
ARMS = (NO_NOISE, PAPERS, DP_TARGET)
NO_NOISE_D, PAPERS_D, DP_TARGET_D = (a + SENSITIVITY_SUFFIX for a in ARMS)
SENSITIVITY = (NO_NOISE_D, PAPERS_D, DP_TARGET_D)
"""The three arms on the Dirichlet(0.5) partition (each arm's noise calibrated on its own split)."""
_BASE = at_fraction(FED_SAFE)


def dp_clip(base: ExperimentConfig) -> float:
    """The uplink clip C of the noisy arms: ``DP_CLIP_TIMES_NORM`` x the L2 norm of the initial model, rounded up
    (clipping the whole weights, design §3, must not shrink a model that trains normally)."""
    spec = TASKS[base.task.name]
    model = model_factory(base, num_classes=len(spec.class_names), in_channels=base.task.channels, layout=False,
                          device="cpu")()
    norm = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))
    return float(math.ceil(DP_CLIP_TIMES_NORM * norm))


def _ceil_significant(x: float, digits: int = 3) -> float:
    """``x`` rounded up to ``digits`` significant digits (more noise, never less)."""
    if x <= 0:
        return x
    scale = 10 ** (math.floor(math.log10(x)) - digits + 1)
    return math.ceil(x / scale - 1e-9) * scale


def dp_noise(cfg: ExperimentConfig, clip: float) -> float:
    """s_U that gives epsilon <= ``DP_MAX_EPSILON`` at ``privacy.delta`` under NbAFL's sensitivity 2C/m (RDP
    accountant, the conservative one) for ``cfg``'s split: its smallest client m, aggregation weights, rounds.
    Reads the task and splits it (the split of this seed). ValueError when the pool cannot be split."""
    try:
        data = prepare_data(cfg, device="cpu")
    except ValueError as e:
        raise ValueError(f"fedsafe-table2 sizes its DP arm's noise from the split, which fails: {e}") from None
    sizes = [len(s) for s in data.client_train]
    t = noise_for_target(target_epsilon=DP_MAX_EPSILON, delta=cfg.privacy.delta, clip=clip, min_local_size=min(sizes),
                         rounds=cfg.train.rounds, num_clients=len(sizes),
                         weights=sizes if cfg.federation.weighted else None, accountant="rdp", sensitivity="nbafl")
    return _ceil_significant(t.sigma_uplink)


def _trainings(base: ExperimentConfig) -> dict[str, ConfigDelta]:
    c = dp_clip(base)
    papers = _BASE | ConfigDelta.of(federation={"uplink_clip": c, "uplink_noise": DP_UPLINK_NOISE})

    def dp(partition: ConfigDelta) -> ConfigDelta:  # s_U for epsilon <= 10 on that partition's own split
        noisy = papers | partition
        return noisy | ConfigDelta.of(federation={"uplink_noise": dp_noise(with_delta(base, noisy), c)})

    return {NO_NOISE: _BASE, PAPERS: papers, DP_TARGET: dp(ConfigDelta()),
            NO_NOISE_D: _BASE | DIRICHLET, PAPERS_D: papers | DIRICHLET, DP_TARGET_D: dp(DIRICHLET)}


def _main(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of the papers' split (the sensitivity arms left out)."""
    return summary[summary.arm.isin(ARMS)] if "arm" in summary else summary


def _measurements(seed: int) -> list[Measurement]:
    return [Measurement(arm, AttackSpec(attack="pgd", eps=e, alpha=e / 4, steps=FS_ATTACK_STEPS, start="random",
                                        seed=seed), tags(arm=arm, eps_value=e))
            for arm in (*ARMS, *SENSITIVITY) for e in EPS_VALUES]


def _epsilons(inp: BuildInput, arm: str) -> dict[str, float]:
    """The worst (largest) accounted PLD epsilon over the seeds, per sensitivity (NaN: no privacy report)."""
    sub = inp.summary[inp.summary.arm == arm] if "arm" in inp.summary else inp.summary.iloc[:0]
    out = {}
    for sens, col in (("nbafl", "epsilon"), ("unconditional", "epsilon_unconditional")):
        vals = pd.to_numeric(sub[col], errors="coerce") if col in sub else pd.Series(dtype=float)
        out[sens] = float(vals.max()) if vals.notna().any() else math.nan
    return out


def arm_label(epsilons: dict[str, float], delta: float) -> str:
    """"DP (epsilon 9.3 at delta 1e-05, NbAFL sensitivity 2C/m)" when an accounted epsilon is at most 10 (NbAFL's
    sensitivity first, then the unconditional one), else "not DP (epsilon ...)"."""
    for sens in SENSITIVITIES:
        e = epsilons.get(sens, math.nan)
        if not math.isnan(e):
            label = dp_label(e, delta, sensitivity=sens)
            if label is not None:
                return label
    shown = ", ".join(f"{fmt_num(epsilons[s], 3)} ({SENSITIVITIES[s][0]})" for s in SENSITIVITIES
                      if not math.isnan(epsilons.get(s, math.nan)))
    return f"not DP (epsilon {shown})" if shown else "not DP (no privacy report)"


def _noise(inp: BuildInput, arm: str) -> tuple[str, str, str]:
    """(C, s_U, s_D) as the seed-0 run applied them, else as its delta set them."""
    info: Run | None = inp.runs.get(arm)
    if info is not None and info.exists:
        n = info.noise()
        return fmt_num(n.clip) if n.clip is not None else "none", fmt_num(n.uplink), fmt_num(n.downlink)
    d = inp.trainings.get(arm, ConfigDelta())
    return (fmt_num(d.get("federation.uplink_clip", "none")), fmt_num(d.get("federation.uplink_noise", 0.0)),
            fmt_num(d.get("federation.downlink_noise", 0.0)))


def _noise_over_clip(inp: BuildInput, arm: str) -> str:
    """The seed-0 run's received noise over its clip C (privacy/noise_scale.py): from its privacy report, or, for
    a run recorded before the report kept it, from its config's model and the report's noise and client sizes."""
    info: Run | None = inp.runs.get(arm)
    if info is None or not info.exists or info.config is None:
        return "n/a"
    recorded = info.privacy.get("noise_scale") or {}
    if "received_to_clip" in recorded:
        ratio = recorded["received_to_clip"]
    else:
        n, sizes = info.noise(), info.privacy.get("client_sizes")
        ratio = None if n.clip is None or not sizes else run_noise_scale(
            info.config, uplink=n.uplink, downlink=n.downlink, clip=n.clip, client_sizes=sizes).received_to_clip
    return "no clip" if ratio is None else fmt_num(ratio, 3)


def _delta(inp: BuildInput) -> float:
    info = next((i for i in inp.runs.values() if i.config is not None), None)
    return info.config.privacy.delta if info is not None else 1e-5  # type: ignore[union-attr]


def _privacy_table(inp: BuildInput, labels: dict[str, str]) -> Table:
    rows = []
    base = inp.summary[inp.summary.arm == NO_NOISE].groupby("seed").clean_acc.first()
    for arm in ARMS:
        sub = inp.summary[inp.summary.arm == arm]
        if sub.empty:
            continue
        eps = _epsilons(inp, arm)
        c, s_u, s_d = _noise(inp, arm)
        acc = sub.groupby("seed").clean_acc.first()
        glob = sub.groupby("seed").global_acc.first()
        maj = sub["majority_class_rate"].mean() if "majority_class_rate" in sub else math.nan
        rows.append({"arm": arm, "C": c, "s_U": s_u, "s_D": s_d,
                     "epsilon, NbAFL sensitivity 2C/m (PLD)": fmt_num(eps["nbafl"], 3),
                     "epsilon, unconditional 2C (PLD)": fmt_num(eps["unconditional"], 3),
                     "received noise / C": _noise_over_clip(inp, arm),
                     "label": labels[arm], "clean acc": fmt_pct(acc.mean()),
                     "clean acc cost vs no noise": f"{100 * (acc.mean() - base.mean()):+.1f} points",
                     "global acc (majority class)": f"{fmt_pct(glob.mean())} ({fmt_pct(maj)})"})
    return Table("Privacy and clean-accuracy cost of each arm", pd.DataFrame(rows),
                 (f"epsilon: the accountant's (PLD), composed over the rounds, at delta {_delta(inp):g}, the worst "
                  "over seeds and clients (uplink and downlink). NbAFL's sensitivity 2C/m assumes a bounded "
                  "per-sample influence that multi-epoch training clipped only at the end does not guarantee; the "
                  "unconditional sensitivity 2C of clipped weights protects a client's whole data set (design §4). A "
                  f"setting is labelled DP only when its accounted epsilon is at most {DP_MAX_EPSILON:g} under the "
                  "sensitivity named beside it. The papers' setting (s_U = 0.001) is theirs by hand, not DP. The "
                  "epsilon <= 10 arm's s_U is calibrated per seed (its split's smallest client) by the RDP "
                  "accountant under the NbAFL sensitivity. Received noise / C: the L2 norm of the noise a client "
                  "receives each round (the averaged uplink noise and its own downlink noise) over the clip C, which "
                  "bounds every averaged model's norm (design §4; the seed-0 run): at 1 or more every client starts "
                  "its round from more noise than model.", *not_learned_note(_main(inp.summary), "arm")))


def _paper(ds: str | None) -> dict[tuple[str, str], Any]:
    if ds in ("MRI", "Pathology"):
        return {(p.row, p.column): p for p in fedsafe_table_2(ds)}
    if ds == "Glioma":
        g = lookup(paper="fed-safe", table="text", dataset="Glioma", row="every eps", column="ASR avg, DP")
        return {(f"eps {e:g}", "ASR avg, DP"): g for e in EPS_VALUES}
    return {}


def _asr_cells(inp: BuildInput, agg: pd.DataFrame) -> Callable[[str, float], str]:
    """``at(arm, eps)``: an arm's mean ± std ASR on benign clients at eps ("n/a" without a run that learned),
    marked † where some of its runs did not learn."""
    idx = {(r.arm, r.eps_value): r._asdict() for r in agg.itertuples()}
    mk = marks(inp.summary, "arm")

    def at(arm: str, e: float) -> str:
        return (cell(idx[(arm, e)], "asr_avg_benign") if (arm, e) in idx else "n/a") + mk.get(arm, "")

    return at


def _asr_table(inp: BuildInput, agg: pd.DataFrame, labels: dict[str, str], ds: str | None) -> Table:
    paper = _paper(ds)
    heads = {NO_NOISE: "avg ASR, no uplink noise", PAPERS: f"avg ASR, papers' setting [{labels[PAPERS]}]",
             DP_TARGET: f"avg ASR, noise for epsilon <= 10 [{labels[DP_TARGET]}]"}
    at = _asr_cells(inp, agg)

    rows = []
    for e in EPS_VALUES:
        row = f"eps {e:g}"
        rows.append({"eps": f"{e:g}", heads[NO_NOISE]: at(NO_NOISE, e),
                     "(paper, its 'no DP')": paper_text(paper.get((row, "ASR avg, no DP"))),
                     heads[PAPERS]: at(PAPERS, e), "(paper, its 'DP')": paper_text(paper.get((row, "ASR avg, DP"))),
                     heads[DP_TARGET]: at(DP_TARGET, e)})
    means = {arm: agg[agg.arm == arm].asr_avg_benign_mean.mean() for arm in ARMS}
    rows.append({"eps": "Average", heads[NO_NOISE]: fmt_pct(means[NO_NOISE]),
                 "(paper, its 'no DP')": paper_text(paper.get(("Average", "ASR avg, no DP"))),
                 heads[PAPERS]: fmt_pct(means[PAPERS]),
                 "(paper, its 'DP')": paper_text(paper.get(("Average", "ASR avg, DP"))),
                 heads[DP_TARGET]: fmt_pct(means[DP_TARGET])})
    notes = [f"Defense: distributed noise (Fed-Safe, downlink noise 0.01, f = {FS_FRACTION:g}). The papers' setting: "
             f"uplink clip C = {DP_CLIP_TIMES_NORM} x the initial model's L2 norm, s_U = {DP_UPLINK_NOISE:g}; the "
             "epsilon <= 10 arm: the same C, s_U for epsilon <= 10 under the NbAFL sensitivity (values in the next "
             f"table). Attack: PGD-{FS_ATTACK_STEPS}, alpha eps/4, random start (the paper does not state the attack).",
             *not_learned_note(_main(inp.summary), "arm"), *no_paper_note(inp, "fed-safe", "Table 2")]
    if ds == "Glioma":
        notes.append("Glioma is not in the paper's Table 2; its text says DP gave 'perfect defense with ASR=0.0' "
                     "at every eps (shown in the paper's 'DP' column).")
    return Table("Fed-Safe Table 2: average ASR on benign clients without and with uplink noise",
                 pd.DataFrame(rows), tuple(notes))


def _sensitivity_table(inp: BuildInput, agg: pd.DataFrame, labels: dict[str, str]) -> Table:
    heads = {arm: f"avg ASR, {arm.removesuffix(SENSITIVITY_SUFFIX)} [{labels[arm]}]" for arm in SENSITIVITY}
    at = _asr_cells(inp, agg)
    rows = [{"eps": f"{e:g}", **{heads[arm]: at(arm, e) for arm in SENSITIVITY}} for e in EPS_VALUES]
    accs = {arm: inp.summary[inp.summary.arm == arm].groupby("seed").clean_acc.first().mean() for arm in SENSITIVITY}
    rows.append({"eps": "clean acc", **{heads[arm]: fmt_pct(accs[arm]) for arm in SENSITIVITY}})
    sub = inp.summary[inp.summary.arm.isin(SENSITIVITY)]
    return Table("SENSITIVITY, not the papers' split: the same three arms on a Dirichlet(0.5) partition",
                 pd.DataFrame(rows),
                 (sensitivity_note(", the epsilon <= 10 arm's noise calibrated on this split"),
                  *not_learned_note(sub, "arm")))


def _build(inp: BuildInput) -> Built:
    agg = attack_means(inp.summary, ["arm", "eps_value"])
    idx = arms(inp.summary, ["arm", "eps_value"])
    ds = paper_dataset(inp, "fed-safe")
    paper = _paper(ds)
    delta = _delta(inp)
    labels = {arm: arm_label(_epsilons(inp, arm), delta) for arm in (*ARMS, *SENSITIVITY)}
    ptxt = ""
    if ("Average", "ASR avg, no DP") in paper:
        ptxt = (f"average {paper[('Average', 'ASR avg, no DP')].text} -> "
                f"{paper[('Average', 'ASR avg, DP')].text} ({ds}), with the setting it calls DP.")
    elif ds == "Glioma":
        ptxt = "Glioma: ASR 0.0 with DP at every eps (text)."
    accs = arms(inp.summary, ["arm"], ["clean_acc"])

    def comps(arm: str, base: str = NO_NOISE) -> list:
        return [comparison(f"eps {e:g}", idx, (arm, e), (base, e), "asr_avg_benign") for e in EPS_VALUES]

    verdicts = (
        compare(f"The papers' noise setting ({labels[PAPERS]}) lowers the average ASR", comps(PAPERS),
                expect="lower", names=("papers' setting", "no noise"), paper=ptxt),
        compare(f"Noise for epsilon <= 10 ({labels[DP_TARGET]}) lowers the average ASR", comps(DP_TARGET),
                expect="lower", names=("epsilon <= 10", "no noise")),
        accuracy_claim("The papers' noise setting costs no clean accuracy", accs, PAPERS, NO_NOISE,
                       ("papers' setting", "no noise")),
        accuracy_claim("Noise for epsilon <= 10 costs no clean accuracy", accs, DP_TARGET, NO_NOISE,
                       ("epsilon <= 10", "no noise")),
        compare(f"SENSITIVITY (Dirichlet 0.5 partition, not the papers' split): the papers' noise setting "
                f"({labels[PAPERS_D]}) lowers the average ASR", comps(PAPERS_D, NO_NOISE_D), expect="lower",
                names=("papers' setting", "no noise")),
        compare(f"SENSITIVITY (Dirichlet 0.5): noise for epsilon <= 10 ({labels[DP_TARGET_D]}) lowers the average "
                "ASR", comps(DP_TARGET_D, NO_NOISE_D), expect="lower", names=("epsilon <= 10", "no noise")),
        accuracy_claim("SENSITIVITY (Dirichlet 0.5): noise for epsilon <= 10 costs no clean accuracy", accs,
                       DP_TARGET_D, NO_NOISE_D, ("epsilon <= 10", "no noise")),
    )
    main = agg[agg.arm.isin(ARMS)]
    plot = main.assign(eps_label=[f"{e:g}" for e in main.eps_value])
    fig = figs.bars(plot, category="eps_label", series="arm", metric="asr_avg_benign", ylabel="avg ASR (benign)",
                    title=f"Fed-Safe Table 2: average ASR without / with uplink noise — {run_label(inp)}")
    return Built((_asr_table(inp, agg, labels, ds), _privacy_table(inp, labels),
                  _sensitivity_table(inp, agg, labels)),
                 (("table2", fig, "Average ASR on benign clients per attack eps and noise arm"),), verdicts, data=agg)


FEDSAFE_TABLE2 = Reproduction("fedsafe-table2", "Fed-Safe Table 2: average ASR without and with uplink noise (the "
                              "papers' setting, and noise for epsilon <= 10)", "fed-safe",
                              _trainings, _measurements, _build,
                              note="the papers' 'DP' setting shown with its accounted epsilon, and an arm whose "
                                   "noise gives epsilon <= 10 (NbAFL sensitivity)")
