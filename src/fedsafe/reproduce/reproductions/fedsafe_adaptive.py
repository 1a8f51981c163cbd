"""fedsafe-adaptive (design §9, not in the papers): does Fed-Safe's lower ASR on benign clients survive an attacker
who knows the noise?

Fed-Safe defends with randomness: every client holds its own noisy, adversarially adapted copy. A randomised
defense must be judged against an attacker who knows the randomisation (Athalye, Carlini and Wagner 2018; Tramer
et al. 2020). Three arms, Fed-Safe Table 1's own trainings at f = 0.2 (the same :class:`~..delta.ConfigDelta`, so
the cached runs are shared): FedAvg (no defense), per-client adversarial training (s_D = 0) and Fed-Safe (s_D =
0.01). Attacks, each client attacking in turn (eps 0.05, step 0.005, 20 steps, Table 1's first step: its PGD
evaluation is Table 1's own, read from the cache): PGD, PGD from the attacker's CRN10 (replayed from the copies
it received), and EOT-PGD with K = 1, 8, 32 noisy copies of its own model a step at the run's s_D (with s_D = 0
the copies are one model: EOT equals PGD there, at the cost of one gradient a step).

Beside each arm, membership inference on its run (:func:`fedsafe.audit.mia.run_membership`: server's
and insider's view, loss threshold and offline LiRA, S shadow models a view; cached in ``RUN/audit/``) and the
accounted epsilon. The plan schedules the membership inference with the trainings and attacks
(``Reproduction.audits``): its cost is in the estimate, ``--jobs`` runs it in the workers, ``--cached-only`` knows
whether it is there, and the build only reads it.
"""

from __future__ import annotations

import math

import pandas as pd

from ...attacks.spec import AttackSpec, Start
from ...audit.mia import MiaSettings, run_membership
from ...report import figures as figs
from ...training.delta import ConfigDelta
from ...verdicts.claims import Verdict, compare, fmt_pct
from .base import BuildInput, Built, Measurement, Reproduction, Table, tags
from .format import (
    accuracy_claim,
    aggregate,
    arms,
    attack_means,
    comparison,
    fmt_frac,
    marks,
    not_learned_note,
    run_label,
    self_avg,
)
from .setups import ADV_TRAINING, AT, DN, FED_SAFE, FS_ATTACK_STEPS, FS_EPS, NO_DEFENSE, NONE, at_fraction

__all__ = ["ADVERSARIES", "EOT_SAMPLES", "FEDSAFE_ADAPTIVE", "METHODS", "MIA_METRICS", "STEP"]

STEP = 0.005
"""PGD's step: Fed-Safe Table 1's first step (alpha), so that the PGD evaluation is shared with Table 1."""
EOT_SAMPLES = (1, 8, 32)
METHODS = (NONE, AT, DN)
CRN_WINDOW = 10
PGD, CRN = f"PGD-{FS_ATTACK_STEPS}", f"PGD-{FS_ATTACK_STEPS}+CRN{CRN_WINDOW}"
ADVERSARIES = (PGD, CRN, *(f"EOT-PGD-{FS_ATTACK_STEPS} K={k}" for k in EOT_SAMPLES))
MIA_METRICS = ("mia_server_lira_auc", "mia_server_loss_auc", "mia_insider_lira_auc", "mia_insider_loss_auc",
               "mia_server_lira_tpr_1pct")
"""The membership-inference numbers of a run beside each arm (NaN where the run is absent)."""
MIA = MiaSettings()
MIA_QUICK = MiaSettings(shadows=2, max_shadow_epochs=5)


def _trainings(base) -> dict[str, ConfigDelta]:
    return {NONE: NO_DEFENSE, AT: at_fraction(ADV_TRAINING), DN: at_fraction(FED_SAFE)}


def _specs(seed: int) -> dict[str, AttackSpec]:
    pgd = AttackSpec(attack="pgd", eps=FS_EPS, alpha=STEP, steps=FS_ATTACK_STEPS, start="random", seed=seed)
    eot = {a: pgd.replace(attack="eot-pgd", samples=k) for a, k in zip(ADVERSARIES[2:], EOT_SAMPLES, strict=True)}
    return {PGD: pgd, CRN: pgd.replace(start=Start.crn(CRN_WINDOW)), **eot}


def _measurements(seed: int) -> list[Measurement]:
    return [Measurement(method, spec, tags(method=method, adversary=adv, samples=spec.samples),
                        heatmap=method == DN and adv in (PGD, ADVERSARIES[-1]))
            for method in METHODS for adv, spec in _specs(seed).items()]


def _membership(summary: pd.DataFrame, quick: bool) -> pd.DataFrame:
    """One row per (method, seed) with the MIA numbers: the summary's own columns when present (tests), else read
    (or computed) from each run directory."""
    runs = summary.drop_duplicates(["method", "seed"])
    if set(MIA_METRICS) <= set(summary.columns):
        return runs[["method", "seed", *MIA_METRICS]].reset_index(drop=True)
    rows = []
    for r in runs.itertuples():
        m = run_membership(r.run_dir, MIA_QUICK if quick else MIA) if "run_dir" in runs.columns else None
        vals = dict.fromkeys(MIA_METRICS, math.nan)
        if m is not None:
            s, i = m["server"]["mean"], m["insider"]["mean"]
            vals = {"mia_server_lira_auc": s["lira"]["auc"], "mia_server_loss_auc": s["loss"]["auc"],
                    "mia_insider_lira_auc": i["lira"]["auc"], "mia_insider_loss_auc": i["loss"]["auc"],
                    "mia_server_lira_tpr_1pct": s["lira"]["tpr_at_1pct_fpr"]}
        rows.append({"method": r.method, "seed": r.seed, **{k: math.nan if v is None else float(v)
                                                            for k, v in vals.items()},
                     "mia_seconds": float((m or {}).get("seconds") or math.nan)})
    return pd.DataFrame(rows, columns=["method", "seed", *MIA_METRICS, "mia_seconds"])


def _asr_table(inp: BuildInput, agg: pd.DataFrame) -> Table:
    idx = {(r.method, r.adversary): r._asdict() for r in agg.itertuples()}
    mk = marks(inp.summary, "method")
    passes = inp.summary[inp.summary.method == DN].groupby("adversary")["fb_passes_per_image"].max()
    rows = [{"attack": adv, **{f"{m}: self / avg": self_avg(idx, (m, adv), mk.get(m, "")) for m in METHODS},
             "passes / image (Fed-Safe)": f"{passes.get(adv, math.nan):.0f}"} for adv in ADVERSARIES]
    info = inp.runs.get(DN)
    s_d = info.noise().downlink if info is not None else 0.01
    return Table(f"ASR self / on benign clients (avg) per attack and defense (eps {FS_EPS}, step {STEP}, "
                 f"{FS_ATTACK_STEPS} steps)", pd.DataFrame(rows),
                 (f"EOT-PGD K=k: at every step the attacker draws k noisy copies w + N(0, s_D^2 I) of its own model "
                  f"(s_D = the run's downlink noise: {s_d:g} for Fed-Safe, 0 for the other two, where EOT equals PGD) "
                  f"and follows the sign of their mean gradient: k x {FS_ATTACK_STEPS} passes an image. PGD+CRN"
                  f"{CRN_WINDOW}: the attacker's cross-round noise of its last {CRN_WINDOW} rounds (replayed from "
                  "the copies it received) as the start. This experiment is new: no paper has numbers for it.",
                  *not_learned_note(inp.summary, "method")))


def _mia_time(mia: pd.DataFrame) -> str:
    """The membership inference's wall time, as the runs' audit files recorded it (it is not attack crafting)."""
    secs = mia["mia_seconds"].dropna() if "mia_seconds" in mia else pd.Series(dtype=float)
    if secs.empty:
        return ""
    return (f" Wall time of the membership inference (shadow models and scoring): {secs.sum() / 60:.0f} min in all "
            f"over {len(secs)} runs ({secs.min() / 60:.0f}-{secs.max() / 60:.0f} min a run), as their audit files "
            "recorded it.")


def _mia_rows(inp: BuildInput, mia: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, seed): the run's accuracy, epsilon, whether it learned, and its membership numbers."""
    per = inp.summary.drop_duplicates(["method", "seed"]).reindex(
        columns=["method", "seed", "training", "clean_acc", "global_acc", "majority_class_rate", "epsilon",
                 "epsilon_unconditional", "learned", "learned_reason", "run_dir"])
    return per.merge(mia, on=["method", "seed"], how="left")


def _mia_table(data: pd.DataFrame, aucs: pd.DataFrame) -> Table:
    """``data``: :func:`_mia_rows`; ``aucs``: the membership means for the table (:func:`attack_means`)."""
    # clean accuracy over every run; the membership numbers, like every attack mean, over the runs that learned
    acc = aggregate(data, ["method"], ["clean_acc", "global_acc"]).set_index("method")
    aucs = aucs.set_index("method")
    agg = acc.join(aucs.drop(columns=[c for c in aucs.columns if c in acc.columns]), how="left")
    mk = marks(data, "method")
    rows = []
    for m in METHODS:
        if m not in agg.index:
            continue
        a, eps = agg.loc[m], data[data.method == m]

        def auc(k: str, a=a, m=m) -> str:
            return fmt_frac(float(a.get(f"{k}_mean", math.nan)), float(a.get(f"{k}_std", math.nan))) + mk.get(m, "")

        rows.append({"defense": m, "clean acc": fmt_pct(a["clean_acc_mean"], a.get("clean_acc_std", math.nan)),
                     "server LiRA AUC": auc("mia_server_lira_auc"), "server loss AUC": auc("mia_server_loss_auc"),
                     "insider LiRA AUC": auc("mia_insider_lira_auc"), "insider loss AUC": auc("mia_insider_loss_auc"),
                     "server LiRA TPR at 1% FPR": fmt_pct(a.get("mia_server_lira_tpr_1pct_mean", math.nan))
                     + mk.get(m, ""),
                     "epsilon NbAFL / unconditional": f"{eps.epsilon.mean():.3g} / "
                                                      f"{eps.epsilon_unconditional.mean():.3g}"})
    notes = ("Membership inference on each arm's run: members = a client's training images, non-members = the "
             "global test set; server: the global model; insider: each client's final model attacking every other "
             "client's data; offline LiRA with shadow models trained on the attacker's own data (see "
             "`fedsafe audit` for the per-client numbers, the budget and the TPRs the non-members cannot resolve). "
             "AUC 0.5 is chance. Epsilon: PLD accountant at delta 1e-5 (inf: no noise to credit). Clean accuracy: "
             "every run; membership numbers: the runs that learned." + _mia_time(data),
             *not_learned_note(data, "method"))
    return Table("Membership inference beside each arm", pd.DataFrame(rows), notes)


def _verdicts(inp: BuildInput, mia_data: pd.DataFrame) -> list[Verdict]:
    """Every comparison on the matched seeds of its arms (:func:`.format.arms`); ``mia_data``: :func:`_mia_rows`."""
    idx = arms(inp.summary, ["method", "adversary"])
    eots, plain = ADVERSARIES[2:], ADVERSARIES[:2]

    def comps(advs, a, b, metric="asr_avg_benign"):
        return [comparison(adv, idx, (a, adv), (b, adv), metric) for adv in advs]

    out = [
        compare("Fed-Safe's lower ASR on benign clients (vs adversarial training) survives an attacker who knows the "
                "noise (EOT-PGD at the run's s_D)", comps(eots, DN, AT), expect="lower",
                names=("Fed-Safe", "AT"), fmt=fmt_frac),
        compare("Fed-Safe lowers the ASR on benign clients vs adversarial training against a non-adaptive attacker",
                comps(plain, DN, AT), expect="lower", names=("Fed-Safe", "AT"), fmt=fmt_frac),
        compare("Knowing the noise helps the attacker: EOT-PGD beats PGD on Fed-Safe's benign clients",
                [comparison(adv, idx, (DN, adv), (DN, PGD), "asr_avg_benign") for adv in eots], expect="higher",
                names=("EOT", "PGD"), fmt=fmt_frac),
    ]
    magg = arms(mia_data.assign(training=mia_data.method), ["method"], MIA_METRICS)  # training: NaN in old CSVs
    for view in ("server", "insider"):
        metric = f"mia_{view}_lira_auc"
        out.append(compare(f"Fed-Safe's noise lowers membership inference ({view}'s view, LiRA AUC) vs FedAvg",
                           [comparison(f"{view} LiRA AUC", magg, DN, NONE, metric)], expect="lower",
                           names=("Fed-Safe", "FedAvg"), fmt=fmt_frac))
    out.append(accuracy_claim("Fed-Safe costs no more clean accuracy than adversarial training",
                              arms(inp.summary, ["method"], ["clean_acc"]), DN, AT, ("Fed-Safe", "AT"), NONE))
    return out


def _build(inp: BuildInput) -> Built:
    agg = attack_means(inp.summary, ["method", "adversary"])
    mia_data = _mia_rows(inp, _membership(inp.summary, inp.quick))
    mia_agg = attack_means(mia_data, ["method"], MIA_METRICS)
    mia_table = _mia_table(mia_data, mia_agg)
    verdicts = _verdicts(inp, mia_data)
    plot = agg.copy()
    fig = figs.bars(plot, category="adversary", series="method", metric="asr_avg_benign", ylabel="ASR avg (benign)",
                    title=f"Does Fed-Safe survive an attacker who knows the noise? — {run_label(inp)}")
    data = agg.merge(mia_agg, on="method", how="left", suffixes=("", "_mia"))  # table.csv: as the tables
    return Built((_asr_table(inp, agg), mia_table), (("adaptive", fig, "ASR on benign clients per attack and "
                                                                       "defense"),), tuple(verdicts), data=data)


FEDSAFE_ADAPTIVE = Reproduction(
    "fedsafe-adaptive", "Fed-Safe against an adaptive insider (EOT over the noise) and membership inference",
    "fed-safe", _trainings, _measurements, _build,
    note="the three arms are Fed-Safe Table 1's trainings at f = 0.2 (shared runs); EOT-PGD at K = 1, 8, 32 with the "
         "run's own downlink noise; membership inference beside each arm (not from the papers: design §13)",
    audits=lambda quick: dict.fromkeys(METHODS, MIA_QUICK if quick else MIA))
