"""The audit's numbers in words: one row per attack evaluation, the accounted epsilon of both sensitivities, and
the plain sentences of the summary ("an insider fools X% of the other clients' predictions; membership of a
client's patients is inferred at AUC Y; the noise spent epsilon Z"). Pure functions of the audit's records.

>>> fmt_eps(float("inf")), fmt_eps(3.21e6), fmt_eps(7.456)
('infinite', '3.21e+06', '7.46')
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..attacks.spec import AttackSpec
from ..jsonsafe import json_float as as_float
from ..jsonsafe import json_pct as fmt_pct
from ..training.trainer import why_not_learned
from ..verdicts.intervals import wilson_interval

__all__ = ["as_float", "asr_intervals", "attack_row", "fmt_auc", "fmt_ci", "fmt_eps", "fmt_pct", "privacy_facts",
           "sentences", "strongest", "verdicts"]


def fmt_auc(v: Any) -> str:
    f = as_float(v)
    return "n/a" if math.isnan(f) else f"{f:.3f}"


def fmt_ci(ci: Any, fmt=fmt_pct) -> str:
    """" (95% CI lo-hi)" of an interval [lo, hi], empty when there is none."""
    if not ci or any(math.isnan(as_float(v)) for v in ci):
        return ""
    return f" (95% CI {fmt(ci[0])}-{fmt(ci[1])})"


def asr_intervals(asr: Any, n_correct: Any, *, asr_self: float, asr_avg_benign: float) -> dict[str, Any]:
    """Wilson 95% intervals of ASR self and ASR on the other clients, over images.

    ``asr``, ``n_correct``: (attackers, targets) matrices (target = attacker on the diagonal). ASR self counts the
    n = sum of the diagonal's correct predictions. ASR on the others is a mean over targets that judged the same
    attack images, whose outcomes are correlated: each image counts once, n = sum over attackers of the mean number
    of correct predictions over its other targets with a defined ASR (a mean of correlated Bernoullis varies at most
    as one does, so this is conservative).
    Returns ``{"asr_self_ci", "asr_avg_benign_ci", "images_self", "images_benign"}``."""
    a, n = np.asarray(asr, dtype=float), np.asarray(n_correct, dtype=float)
    if a.ndim != 2 or a.shape != n.shape:
        return {"asr_self_ci": None, "asr_avg_benign_ci": None, "images_self": 0, "images_benign": 0}
    diag = np.zeros(a.shape, dtype=bool)
    diag[np.arange(min(a.shape)), np.arange(min(a.shape))] = True
    n_self = float(n[diag].sum())
    others = ~diag & ~np.isnan(a)  # an undefined cell (no correct prediction) is out of the mean, as in the ASR
    counts = others.sum(axis=1)
    n_benign = float(sum(n[m][others[m]].mean() for m in range(a.shape[0]) if counts[m]))

    def ci(p: float, m: float) -> list[float] | None:
        if m <= 0 or math.isnan(p):
            return None
        return list(wilson_interval(min(max(p, 0.0), 1.0) * m, m))

    return {"asr_self_ci": ci(asr_self, n_self), "asr_avg_benign_ci": ci(asr_avg_benign, n_benign),
            "images_self": int(n_self), "images_benign": int(round(n_benign))}


def fmt_eps(v: Any) -> str:
    f = as_float(v)
    if math.isnan(f):
        return "n/a"
    if math.isinf(f):
        return "infinite"
    return f"{f:.3g}"


def attack_row(spec: AttackSpec, record: dict[str, Any], frame: pd.DataFrame, *, cached: bool) -> dict[str, Any]:
    """One attack evaluation as the audit reports it: its summary, cost (passes an image: K x steps for EOT-K) and
    ASR matrix."""
    s = record["summary"]
    noise = None
    if spec.attack == "eot-pgd" and "eot_noise_std" in frame and len(frame):
        noise = as_float(frame["eot_noise_std"].iloc[0])
    return {
        "label": spec.label, "key": record["key"], "attack": spec.attack, "eps": spec.eps, "alpha": spec.alpha,
        "steps": spec.steps, "start": str(spec.start), "samples": spec.samples if spec.attack == "eot-pgd" else None,
        "noise_std": noise, **{k: s[k] for k in ("asr_self", "asr_avg_benign", "aasr", "aetr", "clean_acc",
                                                 "attack_acc")},
        "fb_passes_per_image": record["fb_passes_per_image"], "crn_passes_per_image": record["crn_passes_per_image"],
        "seconds_per_batch": record["attack_seconds_per_batch"],
        "start_source": sorted(set(record["start_source"].values())),
        **asr_intervals(record["matrices"]["asr"], record["matrices"].get("n_correct"),
                        asr_self=as_float(s["asr_self"]), asr_avg_benign=as_float(s["asr_avg_benign"])),
        "attackers": record["matrices"]["attackers"], "asr_matrix": record["matrices"]["asr"],
        "sanity_warnings": list(record.get("sanity_warnings") or []), "cached": cached,
    }


def privacy_facts(privacy: dict[str, Any]) -> dict[str, Any]:
    """The noise and the accounted (epsilon, delta) of a run's privacy report, under both sensitivities (PLD)."""
    sens = privacy.get("sensitivities") or {}

    def eps(name: str, fallback: Any = None) -> float:
        return as_float(((sens.get(name) or {}).get("pld") or {}).get("epsilon", fallback))

    return {"noise": privacy.get("noise"), "sigma_uplink": privacy.get("sigma_uplink"),
            "sigma_downlink": privacy.get("sigma_downlink"), "clip": privacy.get("clip"),
            "delta": privacy.get("delta"),
            "epsilon": {"nbafl": eps("nbafl", (privacy.get("pld") or {}).get("epsilon")),
                        "unconditional": eps("unconditional")},
            "dp": dict(privacy.get("dp") or {}),
            # the utility side (privacy/noise_scale.py); None for a run recorded before it was kept
            "noise_scale": privacy.get("noise_scale")}


def strongest(attacks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The attack with the highest ASR on benign clients (None when none is defined)."""
    defined = [a for a in attacks if not math.isnan(as_float(a.get("asr_avg_benign")))]
    return max(defined, key=lambda a: as_float(a["asr_avg_benign"])) if defined else None


def _attack_sentences(s: dict[str, Any]) -> list[str]:
    attacks = s["attacks"]
    if s["clients"] < 2:
        return ["One client: there is no other client for an insider to attack."]
    best = strongest(attacks)
    if best is None:
        return ["No attack result is defined (no benign client classified an attack image correctly)."]
    out = [f"An insider fools {fmt_pct(best['asr_avg_benign'])}{fmt_ci(best.get('asr_avg_benign_ci'))} of the other "
           f"clients' predictions ({best['label']}, "
           f"eps {best['eps']:g}: the share of a benign client's correct predictions on the attacker's test set that "
           f"the attack flips, mean over the {s['clients']} attackers; {fmt_pct(best['asr_self'])} of its own)."]
    parts = []
    for a in attacks:
        extra = (f"; K = {a['samples']} noisy copies a step at s_D = {as_float(a['noise_std']):g}"
                 if a["attack"] == "eot-pgd" else "")
        crn = f" + {a['crn_passes_per_image']} CRN" if a["crn_passes_per_image"] else ""
        parts.append(f"{a['label']} {fmt_pct(a['asr_avg_benign'])}{fmt_ci(a.get('asr_avg_benign_ci'))} "
                     f"({a['fb_passes_per_image']}{crn} passes an "
                     f"image{extra})")
    out.append("ASR on the other clients per attack: " + ", ".join(parts) + ".")
    return out


def _mia_sentences(s: dict[str, Any]) -> list[str]:
    m = s.get("membership")
    if not m:
        return []
    server, insider = m["server"]["mean"], m["insider"]["mean"]
    def auc(r: dict[str, Any]) -> str:
        return fmt_auc(r["auc"]) + fmt_ci(r.get("auc_ci"), fmt_auc)

    text = (f"Membership of a client's patients is inferred at AUC {auc(server['lira'])} by the server "
            f"(offline LiRA, {m['settings']['shadows']} shadow models; loss threshold: AUC {auc(server['loss'])})")
    if m["insider"]["pairs"]:
        text += (f" and at AUC {auc(insider['lira'])} by an insider through its {m['insider_models']} "
                 f"(loss threshold: AUC {auc(insider['loss'])})")
    text += "; 0.5 is chance."
    tpr = server["lira"]["tpr_at_1pct_fpr"]
    if math.isnan(as_float(tpr)):
        tpr_text = (f"TPR at 1% FPR is not resolvable with {m['nonmembers']} non-members (it needs 100; 0.1% needs "
                    "1000).")
    else:
        tpr_text = (f"The server's LiRA finds {fmt_pct(tpr)} of the members at 1% FPR"
                    + ("" if not math.isnan(as_float(server["lira"]["tpr_at_0_1pct_fpr"])) else
                       f"; 0.1% FPR is not resolvable with {m['nonmembers']} non-members") + ".")
    return [text, tpr_text]


def _privacy_sentence(s: dict[str, Any]) -> str:
    p = s["privacy"]
    e = p["epsilon"]
    if math.isinf(as_float(e["nbafl"])) and math.isinf(as_float(e["unconditional"])):
        return ("The noise spent epsilon infinite under both sensitivities: the run has no noise an accountant can "
                "credit, so it gives no differential privacy.")
    delta = as_float(p.get("delta"))
    dp = [label for label in (p.get("dp") or {}).values() if label]
    warning = (p.get("noise_scale") or {}).get("warning")
    return (f"The noise spent epsilon {fmt_eps(e['nbafl'])} (NbAFL sensitivity 2C/m) / {fmt_eps(e['unconditional'])} "
            f"(unconditional sensitivity 2C) at delta {delta:g} (PLD accountant, s_U = "
            f"{as_float(p.get('sigma_uplink')):g}, s_D = {as_float(p.get('sigma_downlink')):g}): "
            + ("; ".join(dp) if dp else "not DP under either (design §4: DP means epsilon <= 10)") + "."
            + (f" At that price {warning}." if warning else ""))


def _accuracy_sentence(s: dict[str, Any]) -> str:
    accs = [as_float(a) for a in (s.get("client_final_acc") or [])]
    clients = f"; the clients' final models {fmt_pct(sum(accs) / len(accs))} on their own test sets" if accs else ""
    return (f"Clean accuracy: the global model {fmt_pct(s.get('global_acc'))} on the global test set (majority class "
            f"{fmt_pct(s.get('majority_class_rate'))}){clients}.")


def _masking_sentence(s: dict[str, Any]) -> str | None:
    if not s.get("masking"):
        return None
    flagged = [c for c in s["masking"] if c["possibly_masking"]]
    if not flagged:
        return ("Gradient-masking checks (PGD along eps and steps on every client's final model): ASR rises with eps "
                "and steps and reaches ~100% at eps 0.5: no sign of masking.")
    return ("Possibly masking (the ASR of a white-box PGD does not behave as it must): "
            + "; ".join(f"client {c['client']}: {c['reasons'][0]}{_square_clause(c)}" for c in flagged) + ".")


def _square_clause(c: dict[str, Any]) -> str:
    """What the gradient-free Square attack did on a flagged client, at the largest eps (absent in older audits)."""
    rates = c.get("square_asr_by_eps")
    if not rates:
        return ""
    return (f" (gradient-free Square-{c['square_queries']} at eps {c['eps_values'][-1]:g}: {rates[-1]:.0%}, PGD "
            f"{c['asr_by_eps'][-1]:.0%})")


def _lower_upper(ci: Any) -> tuple[float, float]:
    if not ci:
        return math.nan, math.nan
    return as_float(ci[0]), as_float(ci[1])


def _mia_verdict(view: dict[str, Any]) -> str:
    cis = {a: _lower_upper(view["mean"][a].get("auc_ci")) for a in ("lira", "loss")}
    above = [a for a, (lo, _) in cis.items() if lo > 0.5]
    if above:
        return "inferred above chance (" + " and ".join(
            "LiRA" if a == "lira" else "loss threshold" for a in above) + ": the AUC's 95% CI lies above 0.5)"
    if all(math.isnan(lo) for lo, _ in cis.values()):
        return "n/a"
    return "not told apart from chance (every AUC's 95% CI reaches 0.5)"


def verdicts(s: dict[str, Any]) -> dict[str, str]:
    """The audit's findings as verdicts that must not change with its budget (design §13): each is decided on a 95%
    interval over images, so a smaller budget can only make a verdict "undecided", never flip it, unless its
    estimate moves. Keys: learned, insider attack, gradient masking, membership (server), membership (insider),
    differential privacy."""
    out = {"learned": "yes" if s.get("learned", True) else "no (the numbers below say nothing)"}
    best = strongest(s.get("attacks") or []) if s.get("clients", 0) > 1 else None
    if best is not None:
        lo, hi = _lower_upper(best.get("asr_avg_benign_ci"))
        out["insider attack"] = ("fools most of the other clients' correct predictions (95% CI above 50%)" if lo > 0.5
                                 else "fools fewer than half of them (95% CI below 50%)" if hi < 0.5
                                 else "undecided around 50% (the 95% CI contains it)")
    if s.get("masking"):
        flagged = [str(c["client"]) for c in s["masking"] if c["possibly_masking"]]
        out["gradient masking"] = f"possibly masking (client {', '.join(flagged)})" if flagged else "no sign"
    m = s.get("membership")
    if m:
        out["membership (server)"] = _mia_verdict(m["server"])
        if m["insider"]["pairs"]:
            out["membership (insider)"] = _mia_verdict(m["insider"])
    p = s.get("privacy") or {}
    dp = [label for label in (p.get("dp") or {}).values() if label]
    eps = [as_float(v) for v in (p.get("epsilon") or {}).values()]
    out["differential privacy"] = ("; ".join(dp) if dp else "not accounted" if all(math.isnan(e) for e in eps)
                                   else "not DP under either sensitivity")
    return out


def sentences(s: dict[str, Any]) -> list[str]:
    """The audit summary in plain sentences (a warning first when the run did not learn)."""
    out = []
    if not s.get("learned", True):
        out.append(f"WARNING: the run did not learn ({why_not_learned(s)}, design §11.3): the attack and membership "
                   "numbers below say nothing about robustness or privacy.")
    if s.get("budget"):
        out.append(s["budget"]["text"])
    out += _attack_sentences(s)
    out += _mia_sentences(s)
    out.append(_privacy_sentence(s))
    out.append(_accuracy_sentence(s))
    masking = _masking_sentence(s)
    if masking:
        out.append(masking)
    out += s.get("attack_notes") or []
    return out
