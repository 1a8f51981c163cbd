"""``fedsafe demo``: the whole story in a few minutes on the embedded synthetic task.

Two federations of 3 clients are trained on the synthetic task (procedurally generated MRI-like slices, not real
data), at a demo size of the ``cpu`` profile (``DEMO_OVERRIDES``: 48 x 48 images, 12 rounds of 2 local epochs, an
IID split; every output names these settings; no sanity checks, to stay within a few minutes):

* plain FedAvg: every client receives the same global model;
* Fed-Safe: each client receives its own noisy copy (downlink noise 0.01), adversarially adapted on the server.

Every client keeps its cross-round noise (CRN) online. Then each client in turn plays the malicious one: PGD-10
from a random start, PGD-10 and PGD-1 from its CRN10, crafted on its own model and test set, evaluated on every
client's model. The outputs are those of a reproduction (``RESULTS/demo/synthetic/``: tables, figure, verdicts,
CSVs) plus the HTML report ``RESULTS/demo/report.html``.

``tiny=True`` (``TINY_OVERRIDES``) shrinks everything further for tests (seconds, numbers meaningless).
``run_demo("results").report`` is the path of the HTML report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..attacks.spec import DEFAULT_EPS, DEFAULT_WINDOWS, AttackSpec, Start
from ..progress import Progress
from ..report import figures as figs
from ..report.html import write_report
from ..training.delta import ConfigDelta
from ..verdicts.claims import compare
from .execution import execute
from .outputs import Written
from .planning import Plan, plan
from .reproductions.base import BuildInput, Built, Measurement, Options, Reproduction, Table
from .reproductions.format import accuracy_claim, arms, attack_means, cell, comparison, fmt_seconds, run_label
from .reproductions.setups import THREE_CLIENTS

__all__ = ["DEMO", "DEMO_OVERRIDES", "TINY_OVERRIDES", "DemoResult", "demo_plan", "run_demo"]

DEMO_PRECISION = "auto"
"""The online CRN's and the attacks' precision in the demo (the reproductions: fp32 for both)."""
DEMO_SIZE = ConfigDelta.of(task={"image_size": 48, "synthetic_size": 1500}, model={"width": 0.25, "dropout": 0.0},
                           train={"rounds": 12, "local_epochs": 2, "lr": 0.003, "eval_every": 0},
                           splits={"partition": "iid", "client_test_size": 50}, crn={"precision": DEMO_PRECISION})
DEMO_OVERRIDES = DEMO_SIZE.overrides()
"""The demo's size: the ``cpu`` profile made smaller so that both federations train in a few minutes on 2 cores, yet
learn the task (global and client accuracy 85-96% measured here: a model at chance would make every attack number
meaningless). 48 x 48 (at 32 x 32 the small lesions are a pixel or two and the model stayed near 65-70%), 1500
images, no dropout and lr 3e-3 (the model leaves chance after 1-2 rounds instead of 4-5). An IID split: with the
papers' non-IID shards this small model stays at chance for 10 rounds. The models are evaluated after the last round
only (``eval_every`` 0: no output of the demo reads the rounds before; the models are the same, ~5% less time).
The online CRN and the attacks run in ``auto`` precision (bf16 where the CPU has bf16 dot products or matrix
units, else fp32; the reproductions use fp32 for both): in fp32 they took a third of the demo's time on a bf16
CPU. 12 rounds of 2 local epochs instead of 10 of 3: the same accuracy (FedAvg global 89.8%, clients 88/96/90%,
against 89.3% and 90/98/90%), 20% fewer local-training passes; 11 rounds left a client at 84%, 13 the global model at
86.7%. Every output names the precision it ran in."""

TINY_SIZE = ConfigDelta.of(task={"image_size": 16, "synthetic_size": 150}, model={"width": 0.05},
                           train={"rounds": 10, "local_epochs": 1}, splits={"client_test_size": 10})
TINY_OVERRIDES = TINY_SIZE.overrides()
"""For tests: seconds, not meaningful numbers."""

FEDAVG, FEDSAFE = "FedAvg (no defense)", "Fed-Safe"
EPS, ALPHA = DEFAULT_EPS, 0.005
WINDOW = max(DEFAULT_WINDOWS)
STEPS = 10
"""The demo's PGD-K: K x alpha = eps, so the attack can just cross the eps-ball."""
# only the CRN10 buffer: the demo attacks from CRN10 alone, and CRN5's buffer was a third of the CRN cost
_COMMON = THREE_CLIENTS | ConfigDelta.of(crn={"enabled": True, "eps": DEFAULT_EPS, "windows": (WINDOW,)})


def _trainings(base) -> dict[str, ConfigDelta]:
    return {FEDAVG: _COMMON | ConfigDelta.of(defense={"name": "none"}, federation={"downlink_noise": 0.0}),
            FEDSAFE: _COMMON | ConfigDelta.of(defense={"name": "fed-safe"}, federation={"downlink_noise": 0.01})}


def _specs(seed: int) -> list[AttackSpec]:
    crn = Start.crn(WINDOW, eps=EPS)
    return [AttackSpec(attack="pgd", eps=EPS, alpha=ALPHA, steps=STEPS, start="random", seed=seed),
            AttackSpec(attack="pgd", eps=EPS, alpha=ALPHA, steps=STEPS, start=crn, seed=seed),
            AttackSpec(attack="pgd", eps=EPS, alpha=ALPHA, steps=1, start=crn, seed=seed)]


def _measurements(seed: int) -> list[Measurement]:
    return [Measurement(t, s, (("method", t), ("row", s.label))) for t in (FEDAVG, FEDSAFE) for s in _specs(seed)]


def _build(inp: BuildInput) -> Built:
    agg = attack_means(inp.summary, ["method", "row"])  # attack means: runs that learned only
    rows = []
    for r in agg.itertuples():
        d = r._asdict()
        rows.append({"federation": r.method, "attack": r.row, "ASR self": cell(d, "asr_self"),
                     "ASR benign": cell(d, "asr_avg_benign"), "AASR": cell(d, "aasr"), "AETR": cell(d, "aetr"),
                     "clean acc": cell(d, "clean_acc"), "s/batch": cell(d, "seconds_per_batch", fmt_seconds)})
    table = Table(f"Transfer from a malicious client (eps {EPS}, alpha {ALPHA})", pd.DataFrame(rows),
                  ("Each client in turn crafts adversarial examples on its own model and test set; ASR self: against "
                   "its own model; ASR benign: mean over the other clients; AASR: over all. Under plain FedAvg every "
                   "client holds the same model, so an insider attacks everyone white-box; under Fed-Safe each "
                   "client's model is its own noisy, adapted copy.",))
    idx = arms(inp.summary, ["method", "row"])
    labels = list(dict.fromkeys(agg.row))
    defended = [comparison(lab, idx, (FEDSAFE, lab), (FEDAVG, lab), "asr_avg_benign") for lab in labels]
    plain = f"PGD-{STEPS}"
    with_crn = f"{plain}+CRN{WINDOW}"
    crn = [comparison(m, idx, (m, with_crn), (m, plain), "asr_avg_benign") for m in (FEDAVG, FEDSAFE)
           if (m, with_crn) in idx and (m, plain) in idx]
    verdicts = (
        compare("Fed-Safe lowers the ASR on benign clients compared with plain FedAvg", defended, expect="lower",
                names=("Fed-Safe", "FedAvg")),
        compare(f"CRN raises the ASR on benign clients (PGD-{STEPS} from CRN{WINDOW} vs from a random start)", crn,
                expect="higher", names=(f"CRN{WINDOW}", "random")),
        accuracy_claim("Fed-Safe costs no clean accuracy compared with plain FedAvg",
                       arms(inp.summary, ["method"], ["clean_acc"]), FEDSAFE, FEDAVG, ("Fed-Safe", "FedAvg")),
    )
    fig = figs.bars(agg, category="row", series="method", metric="asr_avg_benign", ylabel="ASR on benign clients",
                    title=f"Demo: ASR on benign clients — {run_label(inp)}")
    return Built((table,), (("demo", fig, "ASR on benign clients per attack, FedAvg vs Fed-Safe"),), verdicts,
                 notes=("Demo size, not the papers' setting: " + ", ".join(inp.options.overrides) + ".",), data=agg)


DEMO = Reproduction("demo", "Demo: an insider attacks a federation, with and without Fed-Safe", "demo", _trainings,
                    _measurements, _build, "the demo size sets f = 0.5 for Fed-Safe")


@dataclass(frozen=True)
class DemoResult:
    written: Written
    report: Path
    seconds: float
    plan: Plan


def demo_plan(results: str | Path, *, tiny: bool = False, overrides: Sequence[str] = (),
              progress: Progress | None = None) -> Plan:
    over = (*DEMO_OVERRIDES, *(TINY_OVERRIDES if tiny else ()), *overrides)
    return plan([DEMO], tasks=["synthetic"], results=results,
                options=Options(profile="cpu", overrides=over, sanity=False, precision=DEMO_PRECISION),
                progress=progress)


def run_demo(results: str | Path, *, tiny: bool = False, overrides: Sequence[str] = (),
             progress: Progress | None = None, p: Plan | None = None) -> DemoResult:
    """Train, attack, write the tables and ``RESULTS/demo/report.html``."""
    t0 = time.perf_counter()
    p = p or demo_plan(results, tiny=tiny, overrides=overrides, progress=progress)
    (written,) = execute(p, progress=progress)
    report = write_report(written.folder.parent, written.folder.parent / "report.html")
    return DemoResult(written=written, report=report, seconds=time.perf_counter() - t0, plan=p)
