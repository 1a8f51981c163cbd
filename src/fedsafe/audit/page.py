"""The audit's page: one self-contained HTML file (no network, no script) from the summary that
:func:`fedsafe.audit.runner.run_audit` wrote (``RUN/audit/audit.json``): the findings in plain sentences, the
attacks with their ASR heat-maps (attacker x target), the gradient-masking checks, the membership inference of both
views, the accounted epsilon of both sensitivities and the setting. A pure function of the summary.

>>> html = audit_page({"run_dir": "r", "task": "t", "sentences": ["An insider fools 5.0%."], "attacks": []})
>>> "An insider fools 5.0%." in html and html.startswith("<!DOCTYPE html>")
True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..defaults import LEARN_MARGIN_TEXT
from ..report.elements import badges, esc, heatmap, num, page, pct, table
from ..runs.atomic import write_text

__all__ = ["audit_page", "model_text", "write_audit_html"]


def model_text(model: dict[str, Any] | None) -> str:
    """The audited model in words: its name, class, keywords and size (``summary["model"]``).

    >>> model_text({"name": "monai:DenseNet121", "class": "monai.networks.nets.DenseNet121", "parameters": 3294,
    ...             "kwargs": {"growth_rate": 4}})
    'monai:DenseNet121 (monai.networks.nets.DenseNet121, {"growth_rate": 4}, 3,294 parameters)'
    """
    if not model:
        return "n/a"
    parts = [str(model["class"])] if model.get("class") else []
    parts += [json.dumps(model["kwargs"])] if model.get("kwargs") else []
    parts += [f"{model['parameters']:,} parameters"] if model.get("parameters") is not None else []
    return f"{model.get('name')}" + (f" ({', '.join(parts)})" if parts else "")


def _f(v: Any, digits: int = 3) -> str:
    return num(v, digits) if v is not None else "n/a"


def _ci(ci: Any, fmt=pct) -> str:
    """" [lo, hi]" of a 95% interval, empty when the summary has none (older audits)."""
    return f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci and None not in ci else ""


def _attacks(attacks: Sequence[dict[str, Any]]) -> list[str]:
    if not attacks:
        return []
    rows = [[a["label"], pct(a["asr_self"]) + _ci(a.get("asr_self_ci")),
             pct(a["asr_avg_benign"]) + _ci(a.get("asr_avg_benign_ci")), pct(a["aasr"]), pct(a["aetr"]),
             pct(a["clean_acc"]), f"{a['fb_passes_per_image']}" + (f" + {a['crn_passes_per_image']} CRN"
                                                                   if a["crn_passes_per_image"] else ""),
             _f(a["seconds_per_batch"]), "—" if a.get("noise_std") is None else f"{a['noise_std']:g}",
             ", ".join(a["start_source"]), "yes" if a["cached"] else "no"] for a in attacks]
    cols = ["attack", "ASR self", "ASR other clients", "AASR", "AETR", "clean acc", "passes / image", "s / batch",
            "EOT s_D", "start", "cached"]
    maps = [heatmap(f"{a['label']}, eps {a['eps']:g}, alpha {a['alpha']:g}", a["asr_matrix"], a["attackers"])
            for a in attacks]
    return ["<h2>What an insider's attack does to the other clients</h2>", table(cols, rows),
            '<p class="note">ASR: among the target\'s correct predictions on the attacker\'s test set, the share the '
            "attack flips (design §8); other clients: mean over the benign targets; [95% Wilson interval over the "
            "attack images, each counted once]. Passes / image: forward+backward "
            "passes of the attack (K x steps for EOT-PGD with K noisy copies a step).</p>",
            f'<div class="heatmaps">{"".join(maps)}</div>']


def _masking(clients: Sequence[dict[str, Any]]) -> list[str]:
    if not clients:
        return []
    rows = [[c["client"], ", ".join(f"{e:g}: {pct(a)}" for e, a in zip(c["eps_values"], c["asr_by_eps"], strict=True)),
             ", ".join(f"{k}: {pct(a)}" for k, a in zip(c["steps_values"], c["asr_by_steps"], strict=True)),
             _square_cell(c), "possibly masking" if c["possibly_masking"] else "ok", "; ".join(c["reasons"]) or "—"]
            for c in clients]
    first = clients[0]
    return ["<h2>Gradient-masking checks</h2>",
            table(["client", f"ASR by eps ({first['steps_for_eps']} steps)",
                   f"ASR by steps (eps {first['eps_for_steps']:g})", "gradient-free (Square) ASR by eps", "verdict",
                   "reasons"], rows),
            '<p class="note">White-box PGD on each client\'s own final model (Carlini et al. 2019; AutoAttack): ASR '
            "must be 0 at eps 0, rise with eps and with steps, and reach ~100% at eps 0.5. A client that breaks a "
            "rule is attacked again without gradients (Square Attack, forward passes only): what it fools beyond "
            "PGD is what the masking hid.</p>"]


def _square_cell(c: dict[str, Any]) -> str:
    if "square_asr_by_eps" not in c:
        return "— (not in this audit: made before the check)"
    rates = c["square_asr_by_eps"]
    if rates is None:
        return "— (not run: no rule broken)"
    return f"{c['square_queries']} queries: " + ", ".join(
        f"{e:g}: {pct(a)}" for e, a in zip(c["eps_values"], rates, strict=True))


def _roc_cells(r: dict[str, Any]) -> list[str]:
    return [_f(r["auc"]) + _ci(r.get("auc_ci"), _f), pct(r["tpr_at_1pct_fpr"]), pct(r["tpr_at_0_1pct_fpr"])]


def _membership(m: dict[str, Any] | None) -> list[str]:
    if not m:
        return []
    rows = []
    for view, name in (("server", "server (global model)"), ("insider", f"insider ({m['insider_models']})")):
        if view == "insider" and not m["insider"]["pairs"]:
            continue
        for attack, label in (("lira", "offline LiRA"), ("loss", "loss threshold")):
            rows.append([name, label, *_roc_cells(m[view]["mean"][attack])])
    detail = [[f"client {r['client']}", *_roc_cells(r["lira"]), *_roc_cells(r["loss"])]
              for r in m["server"]["per_client"]]
    detail += [[f"insider {r['attacker']} -> client {r['victim']}", *_roc_cells(r["lira"]), *_roc_cells(r["loss"])]
               for r in m["insider"]["pairs"]]
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in m["notes"])
    return ["<h2>What privacy the noise buys, measured: membership inference</h2>",
            table(["view", "attack", "AUC [95% DeLong interval]", "TPR at 1% FPR", "TPR at 0.1% FPR"], rows),
            f'<p class="note">Members: each client\'s training images; non-members: the {m["nonmembers"]} images of '
            f"the global test set. {esc(m['budget'])}. Means over clients (server) and over (insider, victim) "
            "pairs.</p>",
            notes, "<details><summary>Per client and pair</summary>",
            table(["who", "LiRA AUC", "LiRA TPR 1%", "LiRA TPR 0.1%", "loss AUC", "loss TPR 1%", "loss TPR 0.1%"],
                  detail), "</details>"]


def _privacy(s: dict[str, Any]) -> list[str]:
    p = s.get("privacy") or {}
    if not p:
        return []
    e, dp = p.get("epsilon") or {}, p.get("dp") or {}
    rows = [["NbAFL 2C/m (the papers' assumption)", _f(e.get("nbafl"), 4), dp.get("nbafl") or "not DP"],
            ["unconditional 2C", _f(e.get("unconditional"), 4), dp.get("unconditional") or "not DP"]]
    return ["<h2>What privacy the noise buys, accounted</h2>", table(["sensitivity", "epsilon (PLD)", "label"], rows),
            f'<p class="note">s_U {_f(p.get("sigma_uplink"))}, s_D {_f(p.get("sigma_downlink"))}, clip C '
            f'{_f(p.get("clip"))}, delta {_f(p.get("delta"))} ({esc(p.get("noise") or "hand-set")}). "DP" only at '
            f"epsilon <= 10 (design §4).{_noise_beside_model(p.get('noise_scale'))}</p>"]


def _noise_beside_model(scale: dict[str, Any] | None) -> str:
    """The noise a client receives each round beside the clip (privacy/noise_scale.py), when the run recorded it."""
    if not scale:
        return ""
    ratio = scale.get("received_to_clip")
    beside = "" if ratio is None else f", {_f(ratio)} x the clip C"
    return (f" The noise a client receives each round: L2 norm {_f(scale.get('received_norm'))}{beside} (model of "
            f"{scale.get('entries')} entries).")


def audit_page(s: dict[str, Any]) -> str:
    """The HTML page of an audit summary (module docstring)."""
    title = f"fedsafe audit — {s.get('run_dir', '')}"
    quick = ('<span class="badge quick">QUICK audit: fewer attack steps and short shadow models (a smoke test)</span>'
             if s.get("quick") else "")
    body = [f"<h1>{esc(title)}</h1>", quick, badges(False, bool(s.get("synthetic")))]
    if s.get("learned") is False:
        body.append('<div class="verdict does-not-hold"><span class="status">This run did not learn</span>: its '
                    f"global model is within {LEARN_MARGIN_TEXT} of the majority-class rate; the numbers below say "
                    "nothing about "
                    "robustness or privacy.</div>")
    if s.get("budget"):
        body.append(f'<p class="note">{esc(s["budget"]["text"])}</p>')
    body += ["<h2>Findings</h2>", "<ul>", *(f"<li>{esc(x)}</li>" for x in s.get("sentences", [])), "</ul>"]
    if s.get("verdicts"):
        body += ["<h2>Verdicts</h2>", table(["what", "verdict (decided on the 95% intervals)"],
                                           [[k, v] for k, v in s["verdicts"].items()])]
    body += _attacks(s.get("attacks", []))
    body += _masking(s.get("masking") or [])
    body += _membership(s.get("membership"))
    body += _privacy(s)
    setting = [[k, s.get(k)] for k in ("task", "clients", "rounds", "defense", "downlink_noise", "profile")]
    setting.insert(1, ["model", model_text(s.get("model"))])
    setting += [["global accuracy", pct(s.get("global_acc"))], ["learned", s.get("learned")]]
    settings, seconds = json.dumps(s.get("settings"), indent=1), json.dumps(s.get("seconds"), indent=1)
    body += ["<h2>Setting</h2>", table(["what", "value"], setting),
             f"<details><summary>Audit settings and timings</summary><pre>{esc(settings)}\n{esc(seconds)}</pre>"
             "</details>",
             f'<p class="note">fedsafe {esc(s.get("fedsafe_version", ""))}, written {esc(s.get("written", ""))}.</p>']
    return page(title, body)


def write_audit_html(summary: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`audit_page` of ``summary`` to ``path`` (atomically); returns the path."""
    path = Path(path)
    write_text(path, audit_page(summary))
    return path
