"""The insider's adaptive attacks on a loaded run (design §6.1), and the gradient-masking checks of its defense.

* EOT-PGD (:mod:`fedsafe.attacks.eot`): the attacker knows the downlink noise s_D (by default the run's own, as its
  privacy report records it: the noise the run really applied, calibrated or hand-set) and follows the mean
  gradient of K noisy copies of its final model a step, drawn from its own generator keyed
  ``(seed, "eot", attacker)``. With s_D = 0 the K copies are one model and one gradient a step is exact: it is
  computed once, and the row's passes count what was spent (``eot_samples`` keeps the K asked for).
* Ensemble-PGD (:mod:`fedsafe.attacks.ensemble`): the mean gradient of the copies the attacker received over the
  run's last R rounds, read through :meth:`fedsafe.runs.store.RunStore.received_window` (R within
  ``federation.keep_received_rounds``: a missing copy is a one-line error naming it).

Both keep the start of :func:`fedsafe.evaluation.start_resolution.start_delta` (zero, uniform, CRN), so
"EOT-PGD + CRN10" is the same call with another start. :func:`adaptive_attack` gives the evaluation loop
(:mod:`fedsafe.evaluation.transfer_evaluation`) the function, its extra keywords and the row's fields.

Masking (:func:`masking_audit`): on every client's final model and own attack set, PGD's ASR along eps and steps
(:func:`fedsafe.attacks.masking.masking_checks`, Carlini et al. 2019 / AutoAttack): a defense whose white-box ASR
does not rise with eps and steps, or stays far from 100% at eps 0.5, is reported "possibly masking". A client so
flagged is then attacked without gradients (Square, :func:`fedsafe.attacks.square.square_linf`, at the same eps on
the same images): what it fools beyond PGD is what the masking hid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from ..attacks.iterative import AttackResult, pgd
from ..attacks.masking import masking_checks, step_rule
from ..attacks.registry import get_adaptive_attack
from ..attacks.spec import AttackSpec
from ..attacks.square import square_linf
from ..defaults import ATTACK_PRECISION
from ..models.inference import predict
from ..progress import Progress, report
from ..runs.store import RunFileError
from ..seeding import seed_for, torch_generator
from .run_context import RunContext

__all__ = ["MASKING_EPS", "MASKING_IMAGES", "MASKING_STEPS", "MASKING_STEPS_FOR_EPS", "NOT_ADAPTIVE", "SQUARE_QUERIES",
           "adaptive_attack", "masking_audit", "run_downlink_noise", "surrogate_models"]

NOT_ADAPTIVE: dict[str, Any] = {"eot_samples": None, "eot_noise_std": None, "surrogates": None}
"""The adaptive fields of a row of a plain attack."""
MASKING_EPS = (0.0, 0.01, 0.03, 0.1, 0.5)
MASKING_STEPS = (1, 5, 20)
MASKING_STEPS_FOR_EPS = 10
MASKING_IMAGES = 100
"""The masking checks run on (at most) the first 100 images of each client's attack set, one batch: 76 passes an
image, about 4 x PGD-20. Fewer images save less than their share on a CPU (measured: 50 images cost 0.85 x the
time of 96 a PGD step), and 100 keep the ASR's resolution (1%) well under the 5% tolerance of a drop."""
SQUARE_QUERIES = 300
"""The gradient-free cross-check of a client the masking checks flag: Square with 300 queries at each nonzero eps of
:data:`MASKING_EPS`, at most 4 x 300 forward-only passes an image (a fooled image stops early); clients not flagged
cost nothing."""
SQUARE_MARGIN = 0.05
"""Square beating PGD by more than this share of the images at some eps is reported as what the masking hid."""


def run_downlink_noise(ctx: RunContext) -> float:
    """s_D the run applied: its privacy report's ``sigma_downlink`` (calibrated or hand-set), else the config's."""
    try:
        recorded = ctx.store.read_json(ctx.store.layout.privacy_report).get("sigma_downlink")
    except RunFileError:
        recorded = None
    value = float(recorded if recorded is not None else ctx.cfg.federation.downlink_noise)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{ctx.store.layout.privacy_report}: downlink noise {value} is not a std >= 0")
    return value


def surrogate_models(ctx: RunContext, attacker: int, rounds: int) -> list[nn.Module]:
    """The copies client ``attacker`` received over the run's last ``rounds`` rounds (oldest first), as models in
    eval mode on the run's device; RunFileMissing naming the first missing copy."""
    if not 1 <= rounds <= ctx.total_rounds:
        raise ValueError(f"an ensemble of the last {rounds} rounds needs 1 <= R <= the run's {ctx.total_rounds} "
                         "rounds")
    states = ctx.store.received_window(attacker, range(ctx.total_rounds - rounds + 1, ctx.total_rounds + 1))
    models = []
    for state in states:
        model = ctx.model_factory()
        model.load_state_dict(state)
        models.append(model.eval())
    return models


def adaptive_attack(ctx: RunContext, spec: AttackSpec, attacker: int
                    ) -> tuple[Callable[..., AttackResult], dict[str, Any], dict[str, Any]]:
    """(attack function, its extra keywords, the row's adaptive fields) of ``spec`` for ``attacker`` (module
    docstring). ``spec`` must be adaptive."""
    fn = get_adaptive_attack(spec.attack)
    if spec.attack == "eot-pgd":
        s_d = run_downlink_noise(ctx) if spec.noise_std is None else float(spec.noise_std)
        k = spec.samples if s_d > 0 else 1  # no noise: the K copies are one model, one gradient is exact
        kwargs = {"samples": k, "noise_std": s_d, "generator": torch_generator(spec.seed, "eot", attacker)}
        return fn, kwargs, {**NOT_ADAPTIVE, "eot_samples": spec.samples, "eot_noise_std": s_d}
    rounds = int(spec.surrogates)  # type: ignore[arg-type]
    return fn, {"models": surrogate_models(ctx, attacker, rounds)}, {**NOT_ADAPTIVE, "surrogates": rounds}


def masking_audit(ctx: RunContext, *, seed: int = 0, precision: str = ATTACK_PRECISION,
                  progress: Progress | None = None, images: int = MASKING_IMAGES) -> list[dict[str, Any]]:
    """The masking checks of every client's final model on its own attack set (its first ``images`` images,
    :data:`MASKING_IMAGES` by default): PGD (Madry's step 2.5 eps / steps,
    random start from ``seed_for(seed, "masking", client)``) at eps :data:`MASKING_EPS` (10 steps) and at steps
    :data:`MASKING_STEPS` (eps 0.03). One dict a client: the two curves, the flags and the reasons; for a client
    flagged "possibly masking", also Square's ASR at each eps (``square_asr_by_eps``, :data:`SQUARE_QUERIES` queries,
    generator from ``(seed, "square", client)``; None for the others), and a reason when it fools more than PGD."""
    out = []
    for i, model in enumerate(ctx.models):
        report(progress, "masking checks", i, ctx.num_clients)
        attack = step_rule(pgd, seed=seed_for(seed, "masking", i), precision=precision)
        x = ctx.data.client_test[i].x[:images]
        r = masking_checks(attack, model, x, eps_values=MASKING_EPS, steps_for_eps=MASKING_STEPS_FOR_EPS,
                           steps_values=MASKING_STEPS)
        square, reasons = _square_check(model, x, r, seed=seed, client=i, precision=precision)
        out.append({"client": i, "images": min(images, len(ctx.data.client_test[i])),
                    "possibly_masking": r.possibly_masking, "reasons": reasons,
                    "square_queries": SQUARE_QUERIES if square is not None else None, "square_asr_by_eps": square,
                    "eps_values": list(r.eps_values), "asr_by_eps": list(r.asr_by_eps),
                    "steps_for_eps": r.steps_for_eps, "steps_values": list(r.steps_values),
                    "asr_by_steps": list(r.asr_by_steps), "eps_for_steps": r.eps_for_steps,
                    "rises_with_eps": r.rises_with_eps, "rises_with_steps": r.rises_with_steps,
                    "reaches_large_eps": r.reaches_large_eps, "changes_at_eps_zero": r.changes_at_eps_zero})
    report(progress, "masking checks", ctx.num_clients, ctx.num_clients)
    return out


def _square_check(model: nn.Module, x, r, *, seed: int, client: int, precision: str
                  ) -> tuple[list[float] | None, list[str]]:
    """Square's ASR along ``r``'s eps (None when ``r`` flags nothing) and ``r``'s reasons, plus one when Square
    fools more than :data:`SQUARE_MARGIN` beyond PGD at some eps (the largest such gap is named)."""
    reasons = list(r.reasons)
    if not r.possibly_masking:
        return None, reasons
    clean = predict(model, x)
    rates = []
    for eps in r.eps_values:
        if eps == 0:
            rates.append(0.0)
            continue
        adv = square_linf(model, x, eps=eps, queries=SQUARE_QUERIES, precision=precision,
                          generator=torch_generator(seed, "square", client)).x_adv
        rates.append(float((predict(model, adv) != clean).double().mean()))
    gaps = [(s - a, e, s, a) for e, s, a in zip(r.eps_values, rates, r.asr_by_eps, strict=True)]
    gap, eps, sq, pg = max(gaps)
    if gap > SQUARE_MARGIN:
        reasons.append(f"gradient-free Square-{SQUARE_QUERIES} fools {sq:.0%} at eps {eps:g} where PGD fools {pg:.0%}: "
                       "gradient attacks understate this model's risk")
    return rates, reasons
