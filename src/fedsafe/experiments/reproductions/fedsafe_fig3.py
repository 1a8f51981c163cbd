"""Fed-Safe paper, Figure 3 (Section 4.3): ASR against the fraction f of adversarial adaptation samples
(10 ... 100%), adversarial training vs distributed noise; PGD-20, eps 0.05, alpha 0.005 (the attack is not stated).
The paper gives a plot, and in its text one number per dataset (distributed noise at 20%).
"""

from __future__ import annotations

import math

import pandas as pd

from ...attacks.spec import AttackSpec
from .. import figures as figs
from ..delta import ConfigDelta
from ..verdicts import Comparison, compare, trend
from .base import BuildInput, Built, Measurement, Reproduction, Table, tags
from .format import aggregate, cell, dataset, no_paper_note, paper_value, run_label
from .setups import AT, DN, FS_ATTACK_STEPS, FS_EPS, METHODS

__all__ = ["ALPHA", "FEDSAFE_FIG3", "FRACTIONS"]

FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
ALPHA = 0.005
HEATMAP_FRACTIONS = (0.1, 1.0)

# Fed-Safe, Section 4.3, text on Figure 3 (papers/000_9a91d1df02d57be5.txt line 113): distributed noise with 20% of
# the samples: ASR on benign clients 12.2% pathology, 9.7% meningioma ("MRI"), 0.0% glioma.
_TEXT = {"MRI": 0.097, "Glioma": 0.0, "Pathology": 0.122}
_TEXT_FRACTION = 0.2


def _name(method: str, f: float) -> str:
    return f"{method} f={f:g}"


def _trainings(base) -> dict[str, ConfigDelta]:
    return {_name(m, f): d | ConfigDelta.of(defense={"fraction": f}) for m, d in METHODS.items() for f in FRACTIONS}


def _measurements(seed: int) -> list[Measurement]:
    return [Measurement(_name(m, f), AttackSpec(attack="pgd", eps=FS_EPS, alpha=ALPHA, steps=FS_ATTACK_STEPS,
                                                start="random", seed=seed),
                        tags(method=m, fraction=f), heatmap=f in HEATMAP_FRACTIONS)
            for m in METHODS for f in FRACTIONS]


def _build(inp: BuildInput) -> Built:
    agg = aggregate(inp.summary, ["method", "fraction"])
    ds = dataset(inp.task, "fed-safe")
    fig = figs.line_panels(agg, x="fraction", series="method", x_as_percent=True,
                           xlabel="adversarial adaptation samples (% of the server set)",
                           panels=[("asr_avg_benign", "(a) ASR on benign clients"),
                                   ("asr_self", "(b) ASR on the adversarial client")],
                           title=f"Fed-Safe Figure 3: ASR vs adaptation samples (PGD-{FS_ATTACK_STEPS}, eps "
                                 f"{FS_EPS}, alpha {ALPHA}) — {run_label(inp)}")
    idx = {(r.method, r.fraction): r._asdict() for r in agg.itertuples()}

    def at(method: str, f: float, metric: str) -> str:
        return cell(idx[(method, f)], metric) if (method, f) in idx else "n/a"

    rows = []
    for f in FRACTIONS:
        paper = _TEXT.get(ds) if ds and math.isclose(f, _TEXT_FRACTION) else None
        rows.append({"samples": f"{100 * f:g}%", "AT: ASR benign": at(AT, f, "asr_avg_benign"),
                     "AT: ASR self": at(AT, f, "asr_self"), "DN: ASR benign": at(DN, f, "asr_avg_benign"),
                     "DN: ASR benign (paper text)": paper_value(paper), "DN: ASR self": at(DN, f, "asr_self"),
                     "AT: clean acc": at(AT, f, "clean_acc"), "DN: clean acc": at(DN, f, "clean_acc")})
    table = Table("Fed-Safe Figure 3: ASR vs fraction of adversarial adaptation samples", pd.DataFrame(rows),
                  ("AT: adversarial training; DN: distributed noise (Fed-Safe). The fraction f selects that share of "
                   "the server data set for adaptation. The paper gives Figure 3 as a plot; its text gives one number "
                   "per dataset (DN at 20%: pathology 12.2%, meningioma 9.7%, glioma 0.0%). The attack is not stated: "
                   f"PGD-{FS_ATTACK_STEPS}, eps {FS_EPS}, alpha {ALPHA} here.",
                   *no_paper_note(inp.task, "fed-safe", "Figure 3")))
    curves = {m: (list(g.fraction), list(g.asr_avg_benign_mean)) for m, g in agg.groupby("method", sort=False)}
    comps = [Comparison(f"{100 * f:g}%", idx[(DN, f)]["asr_avg_benign_mean"], idx[(AT, f)]["asr_avg_benign_mean"],
                        idx[(DN, f)]["asr_avg_benign_std"], idx[(AT, f)]["asr_avg_benign_std"])
             for f in FRACTIONS if (DN, f) in idx and (AT, f) in idx]
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


FEDSAFE_FIG3 = Reproduction("fedsafe-fig3", "Fed-Safe Figure 3: ASR vs adaptation samples", "fed-safe", _trainings,
                            _measurements, _build)
