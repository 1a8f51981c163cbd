"""Fed-Safe paper, Figure 3 (Section 4.3): ASR against the fraction f of adversarial adaptation samples
(10 ... 100% of each client's training set |D_i|), adversarial training vs distributed noise; PGD-20, eps 0.05,
alpha 0.005 (the attack is not stated). The paper gives a plot, and in its text one number per dataset
(distributed noise at 20%).

All runs share the Fed-Safe split (its server set holds f = 1 of the largest |D_i|), so each f is a real
round(f |D_i|) images; the table and the axis give the counts of the seed-0 runs. The f = 0.2 runs are Table 1's
(the same configs, the same cached trainings): 12 trainings a seed, 10 of them not in Table 1.
"""

from __future__ import annotations

import math

import pandas as pd

from ...attacks.spec import AttackSpec
from ...report import figures as figs
from ...training.delta import ConfigDelta
from ...verdicts.claims import compare, trend
from .base import BuildInput, Built, Measurement, Reproduction, Table, tags
from .format import (
    arms,
    attack_means,
    cell,
    comparison,
    curve,
    fraction_text,
    marks,
    no_paper_note,
    not_learned_note,
    paper_dataset,
    paper_value,
    run_label,
)
from .setups import AT, DN, FS_ATTACK_STEPS, FS_EPS, FS_FRACTION, METHODS, at_fraction

__all__ = ["ALPHA", "FEDSAFE_FIG3", "FRACTIONS", "training_name"]

FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
ALPHA = 0.005
HEATMAP_FRACTIONS = (0.1, 1.0)

# Fed-Safe, Section 4.3, text on Figure 3 (papers/000_9a91d1df02d57be5.txt line 113): distributed noise with 20% of
# the samples: ASR on benign clients 12.2% pathology, 9.7% meningioma ("MRI"), 0.0% glioma.
_TEXT = {"MRI": 0.097, "Glioma": 0.0, "Pathology": 0.122}
_TEXT_FRACTION = FS_FRACTION


def training_name(method: str, f: float) -> str:
    """The name of the training of ``method`` at fraction ``f``."""
    return f"{method} f={f:g}"


def _trainings(base) -> dict[str, ConfigDelta]:
    return {training_name(m, f): at_fraction(d, f) for m, d in METHODS.items() for f in FRACTIONS}


def _measurements(seed: int) -> list[Measurement]:
    return [Measurement(training_name(m, f), AttackSpec(attack="pgd", eps=FS_EPS, alpha=ALPHA, steps=FS_ATTACK_STEPS,
                                                        start="random", seed=seed),
                        tags(method=m, fraction=f), heatmap=f in HEATMAP_FRACTIONS)
            for m in METHODS for f in FRACTIONS]


def _counts(inp: BuildInput) -> dict[float, str]:
    """f -> "f 0.2: 35-36 images (20% of |D_i|)" from the seed-0 adversarial-training run at that f."""
    return {f: fraction_text(inp.runs.get(training_name(AT, f)) or inp.runs.get(training_name(DN, f)), f)
            for f in FRACTIONS}


def _tick(f: float, text: str) -> str:
    images = text.partition(": ")[2].partition(" images")[0]
    return f"{100 * f:g}%\n{images} img" if images else f"{100 * f:g}%"


def _build(inp: BuildInput) -> Built:
    agg = attack_means(inp.summary, ["method", "fraction"])
    ds = paper_dataset(inp, "fed-safe")
    counts = _counts(inp)
    fig = figs.line_panels(agg, x="fraction", series="method", x_as_percent=True,
                           xticklabels={100 * f: _tick(f, t) for f, t in counts.items()},
                           xlabel="adversarial adaptation samples: % of each client's |D_i| (images per copy)",
                           panels=[("asr_avg_benign", "(a) ASR on benign clients"),
                                   ("asr_self", "(b) ASR on the adversarial client")],
                           title=f"Fed-Safe Figure 3: ASR vs adaptation samples (PGD-{FS_ATTACK_STEPS}, eps "
                                 f"{FS_EPS}, alpha {ALPHA}) — {run_label(inp)}")
    idx = {(r.method, r.fraction): r._asdict() for r in agg.itertuples()}
    mk = marks(inp.summary)

    def at(method: str, f: float, metric: str) -> str:
        mark = mk.get(training_name(method, f), "")
        return cell(idx[(method, f)], metric) + mark if (method, f) in idx else "n/a"

    rows = []
    for f in FRACTIONS:
        paper = _TEXT.get(ds) if ds and math.isclose(f, _TEXT_FRACTION) else None
        rows.append({"f": f"{f:g}", "adaptation samples (seed 0)": counts[f].partition(": ")[2] or counts[f],
                     "AT: ASR benign": at(AT, f, "asr_avg_benign"), "AT: ASR self": at(AT, f, "asr_self"),
                     "DN: ASR benign": at(DN, f, "asr_avg_benign"),
                     "DN: ASR benign (paper text)": paper_value(paper), "DN: ASR self": at(DN, f, "asr_self"),
                     "AT: clean acc": at(AT, f, "clean_acc"), "DN: clean acc": at(DN, f, "clean_acc")})
    table = Table("Fed-Safe Figure 3: ASR vs adversarial adaptation samples", pd.DataFrame(rows),
                  ("AT: adversarial training (per client); DN: distributed noise (Fed-Safe). f is relative to each "
                   "client's training set: client i's copy is adapted on round(f |D_i|) server images (the counts "
                   "of the seed-0 runs; the server set holds f = 1 of the largest client). The f = 0.2 runs are "
                   "Table 1's. The paper gives Figure 3 as a plot; its text gives one number per dataset (DN at 20%: "
                   "pathology 12.2%, meningioma 9.7%, glioma 0.0%). The attack is not stated: "
                   f"PGD-{FS_ATTACK_STEPS}, eps {FS_EPS}, alpha {ALPHA} here.",
                   *not_learned_note(inp.summary), *no_paper_note(inp, "fed-safe", "Figure 3")))
    idx_v = arms(inp.summary, ["method", "fraction"])
    curves = {m: curve(idx_v, [(m, f) for f in FRACTIONS], FRACTIONS, "asr_avg_benign")
              for m in dict.fromkeys(inp.summary.method)}
    comps = [comparison(f"{100 * f:g}%", idx_v, (DN, f), (AT, f), "asr_avg_benign") for f in FRACTIONS]
    verdicts = (
        trend("More adaptation samples lower the ASR on benign clients", curves, expect="decreasing",
              xname="f",
              paper="'using more retraining samples in the global model leads to a lower attack success "
                    "rate in all scenarios' (Section 4.3)."),
        compare("Distributed noise needs fewer samples: lower ASR on benign clients than adversarial training at the "
                "same fraction", comps, expect="lower", names=("DN", "AT"),
                paper="'distributed noise outperformed adversarial training and achieved perfect defense with much "
                      "fewer samples'."),
    )
    return Built((table,), (("fig3", fig, "ASR on benign clients (a) and on the adversary (b) against the "
                                          "adaptation samples (% of |D_i|, images per client copy)"),),
                 verdicts, data=agg)


FEDSAFE_FIG3 = Reproduction("fedsafe-fig3", "Fed-Safe Figure 3: ASR vs adaptation samples", "fed-safe", _trainings,
                            _measurements, _build)
