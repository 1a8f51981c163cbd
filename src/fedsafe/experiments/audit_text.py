"""The audit's numbers in words: one row per attack evaluation, the accounted epsilon of both sensitivities, and
the plain sentences of the summary ("an insider fools X% of the other clients' predictions; membership of a
client's patients is inferred at AUC Y; the noise spent epsilon Z"). Pure functions of the audit's records.

>>> fmt_eps(float("inf")), fmt_eps(3.21e6), fmt_eps(7.456)
('infinite', '3.21e+06', '7.46')
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..attacks.spec import AttackSpec

__all__ = ["as_float", "attack_row", "fmt_auc", "fmt_eps", "fmt_pct", "privacy_facts", "sentences", "strongest"]


def as_float(v: Any) -> float:
    """A number of a JSON record (None -> NaN, "inf" -> inf)."""
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def fmt_pct(v: Any) -> str:
    f = as_float(v)
    return "n/a" if math.isnan(f) else f"{100 * f:.1f}%"


def fmt_auc(v: Any) -> str:
    f = as_float(v)
    return "n/a" if math.isnan(f) else f"{f:.3f}"


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
            "dp": dict(privacy.get("dp") or {})}


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
    out = [f"An insider fools {fmt_pct(best['asr_avg_benign'])} of the other clients' predictions ({best['label']}, "
           f"eps {best['eps']:g}: the share of a benign client's correct predictions on the attacker's test set that "
           f"the attack flips, mean over the {s['clients']} attackers; {fmt_pct(best['asr_self'])} of its own)."]
    parts = []
    for a in attacks:
        extra = (f"; K = {a['samples']} noisy copies a step at s_D = {as_float(a['noise_std']):g}"
                 if a["attack"] == "eot-pgd" else "")
        crn = f" + {a['crn_passes_per_image']} CRN" if a["crn_passes_per_image"] else ""
        parts.append(f"{a['label']} {fmt_pct(a['asr_avg_benign'])} ({a['fb_passes_per_image']}{crn} passes an "
                     f"image{extra})")
    out.append("ASR on the other clients per attack: " + ", ".join(parts) + ".")
    return out


def _mia_sentences(s: dict[str, Any]) -> list[str]:
    m = s.get("membership")
    if not m:
        return []
    server, insider = m["server"]["mean"], m["insider"]["mean"]
    text = (f"Membership of a client's patients is inferred at AUC {fmt_auc(server['lira']['auc'])} by the server "
            f"(offline LiRA, {m['settings']['shadows']} shadow models; loss threshold: AUC "
            f"{fmt_auc(server['loss']['auc'])})")
    if m["insider"]["pairs"]:
        text += (f" and at AUC {fmt_auc(insider['lira']['auc'])} by an insider through its {m['insider_models']} "
                 f"(loss threshold: AUC {fmt_auc(insider['loss']['auc'])})")
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
    return (f"The noise spent epsilon {fmt_eps(e['nbafl'])} (NbAFL sensitivity 2C/m) / {fmt_eps(e['unconditional'])} "
            f"(unconditional sensitivity 2C) at delta {delta:g} (PLD accountant, s_U = "
            f"{as_float(p.get('sigma_uplink')):g}, s_D = {as_float(p.get('sigma_downlink')):g}): "
            + ("; ".join(dp) if dp else "not DP under either (SPEC 4: DP means epsilon <= 10)") + ".")


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
            + "; ".join(f"client {c['client']}: {c['reasons'][0]}" for c in flagged) + ".")


def sentences(s: dict[str, Any]) -> list[str]:
    """The audit summary in plain sentences (a warning first when the run did not learn)."""
    out = []
    if not s.get("learned", True):
        out.append(f"WARNING: the global model did not learn (accuracy {fmt_pct(s.get('global_acc'))} vs majority "
                   f"class {fmt_pct(s.get('majority_class_rate'))}, SPEC 11): the attack and membership numbers below "
                   "say nothing about robustness or privacy.")
    out += _attack_sentences(s)
    out += _mia_sentences(s)
    out.append(_privacy_sentence(s))
    out.append(_accuracy_sentence(s))
    masking = _masking_sentence(s)
    if masking:
        out.append(masking)
    out += s.get("attack_notes") or []
    return out
