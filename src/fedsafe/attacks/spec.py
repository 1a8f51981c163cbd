"""One attack configuration and its start point (design §§6-7): every parameter of an attack evaluation
defined once, validated once (:mod:`fedsafe.attacks.budget`), with its defaults taken from the config.

* :class:`Start`: where the step loop starts. ``Start.zero()`` (FGSM, BIM), ``Start.uniform()`` (PGD: a uniform
  point of the eps-ball; named "random" in tables and file names), or ``Start.crn(R, eps=..., alpha=...,
  steps=...)``: the attacker's cross-round noise over the last R rounds (``final=True``: the same R x j centred
  steps run on the attacker's final model alone, the compute-matched control of design §7). A CRN start names its own
  budget and step, which need not be the attack's: ``None`` means the run's own (``crn.eps``; ``crn.alpha``, else
  eps / j; j = ``crn.steps``, else the local epochs), i.e. the settings its online buffers were accumulated with
  (:meth:`Start.crn_settings`). The attack's eps bounds the final perturbation: a CRN delta is projected into it.
* :class:`AttackSpec`: the attack (FGSM / BIM / PGD, or an insider's adaptive attack: EOT-PGD over the downlink
  noise, PGD on the ensemble of the copies received over the last R rounds), eps, alpha, steps, start, seed,
  centring and labels; an adaptive attack adds its own settings (K and s_D; R), which appear in its record and cache
  key only for that attack, so that every other attack keeps its key. The gradient-free Square attack
  (``attack="square"``) counts its queries in ``steps``, takes no step size and starts from its own random stripes
  (its start is "random"; a zero or CRN start, or centring, is refused).

Defaults: ``DEFAULT_EPS`` (0.05) and ``DEFAULT_WINDOWS`` ((5, 10): CRN5, CRN10) are :class:`fedsafe.config.CrnConfig`'s;
``DEFAULT_ALPHA`` (0.001) and ``DEFAULT_STEPS`` (20) are the CRN paper's Table I attack.

>>> spec = AttackSpec(attack="pgd", steps=1, start="crn10")
>>> spec.label, spec.start.name, spec.start.eps is None
('PGD-1+CRN10', 'crn10', True)
>>> AttackSpec(attack="fgsm", eps=0.03, start=Start.crn(5, eps=0.03)).label
'FGSM+CRN5'
>>> Start.parse("random") == Start.uniform(), str(Start.zero())
(True, 'zero')
>>> eot = AttackSpec(attack="eot-pgd", steps=20, samples=8, start="crn10")
>>> eot.label, eot.passes_per_image, eot.noise_std is None
('EOT8-PGD-20+CRN10', 160, True)
>>> sq = AttackSpec(attack="square", steps=1000)
>>> sq.label, sq.alpha, sq.passes_per_image, sq.query
('Square-1000', None, 0, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fedsafe.attacks.budget import check_alpha, check_eps, check_steps, check_window
from fedsafe.attacks.crn import crn_alpha
from fedsafe.attacks.registry import ADAPTIVE_ATTACKS, ATTACKS, QUERY_ATTACKS
from fedsafe.config import CrnConfig, ExperimentConfig
from fedsafe.defaults import crn_steps

__all__ = ["DEFAULT_ALPHA", "DEFAULT_EOT_SAMPLES", "DEFAULT_EPS", "DEFAULT_SQUARE_QUERIES", "DEFAULT_STEPS",
           "DEFAULT_SURROGATES", "DEFAULT_WINDOWS", "AttackSpec", "CrnSettings", "Start", "parse_start", "sweep"]

_CRN_DEFAULTS = CrnConfig()
DEFAULT_EPS: float = _CRN_DEFAULTS.eps
"""The papers' L-inf budget (0.05): the default of every attack and of the online CRN (``crn.eps``)."""
DEFAULT_WINDOWS: tuple[int, ...] = _CRN_DEFAULTS.windows
"""The CRN paper's windows R (CRN5, CRN10): ``crn.windows``'s default."""
DEFAULT_ALPHA = 0.001
"""The CRN paper's Table I step size."""
DEFAULT_STEPS = 20
DEFAULT_EOT_SAMPLES = 8
"""EOT-PGD's K, noisy copies of the attacker's model a step, unless asked otherwise (``attack``, ``audit``)."""
DEFAULT_SURROGATES = 5
"""Ensemble PGD's R, the copies received over the last R rounds, unless asked otherwise."""
DEFAULT_SQUARE_QUERIES = 1000
"""Square's queries (iterations) unless asked otherwise: AutoAttack's standard run uses 5000; 1000 already crosses
the eps-ball of the papers' small CNNs (``docs/results/attack-spread.md``)."""

StartKind = Literal["zero", "uniform", "crn"]
_NAME = re.compile(r"^(zero|random|uniform|crn([0-9]+)(-final)?)$")


@dataclass(frozen=True)
class CrnSettings:
    """A CRN start resolved against a run's config: the window R, the budget, the step, j steps a round, centring."""

    window: int
    eps: float
    alpha: float
    steps: int
    centre_grad: bool


@dataclass(frozen=True)
class Start:
    """A start point of the step loop (module docstring). ``window``, ``eps``, ``alpha``, ``steps``: a CRN start's
    R, budget, step size and steps a round (None: the run's); ``final``: run its R rounds of steps on the attacker's
    final model instead of the copies it received (the control that isolates the cross-round effect)."""

    kind: StartKind = "uniform"
    window: int | None = None
    eps: float | None = None
    alpha: float | None = None
    steps: int | None = None
    final: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("zero", "uniform", "crn"):
            raise ValueError(f'a start is "zero", "uniform" or "crn", got {self.kind!r}')
        if self.kind == "crn":
            check_window(self.window)  # type: ignore[arg-type]
            if self.eps is not None:
                object.__setattr__(self, "eps", check_eps(self.eps, positive=True))
            if self.alpha is not None:
                object.__setattr__(self, "alpha", check_alpha(self.alpha, who="CRN"))
            if self.steps is not None:
                check_steps(self.steps, what="CRN steps")
        elif (self.window, self.eps, self.alpha, self.steps, self.final) != (None, None, None, None, False):
            raise ValueError(f"a {self.kind} start takes no CRN settings (window, eps, alpha, steps, final)")

    @classmethod
    def zero(cls) -> Start:
        return cls("zero")

    @classmethod
    def uniform(cls) -> Start:
        return cls("uniform")

    @classmethod
    def crn(cls, window: int, *, eps: float | None = None, alpha: float | None = None,
            steps: int | None = None, final: bool = False) -> Start:
        return cls("crn", window=window, eps=eps, alpha=alpha, steps=steps, final=final)

    @classmethod
    def parse(cls, value: Start | str) -> Start:
        """A start from its name: ``"zero"``, ``"random"`` (or ``"uniform"``), ``"crnR"`` (run's CRN settings),
        ``"crnR-final"`` (the same on the final model alone)."""
        if isinstance(value, Start):
            return value
        m = _NAME.match(value) if isinstance(value, str) else None
        if m is None:
            raise ValueError(f"start must be zero, random or crnR (e.g. crn5, crn10, crn10-final), got {value!r}")
        if m.group(2) is not None:
            return cls.crn(int(m.group(2)), final=m.group(3) is not None)
        return cls.zero() if value == "zero" else cls.uniform()

    @property
    def name(self) -> str:
        """"zero", "random", "crnR" or "crnR-final", as in the tables, the file names and the cache keys."""
        return {"zero": "zero", "uniform": "random"}.get(self.kind) or f"crn{self.window}{'-final' * self.final}"

    def __str__(self) -> str:
        return self.name

    def crn_settings(self, cfg: ExperimentConfig) -> CrnSettings:
        """This CRN start on a run of ``cfg``: its own eps / alpha / steps where given, else the run's."""
        if self.kind != "crn":
            raise ValueError(f"start {self.name!r} is not a CRN start")
        c = cfg.crn
        eps = c.eps if self.eps is None else self.eps
        steps = int(self.steps or crn_steps(cfg))
        alpha = crn_alpha(eps=eps, steps=steps, alpha=c.alpha if self.alpha is None else self.alpha)
        return CrnSettings(window=int(self.window), eps=eps, alpha=alpha, steps=steps,  # type: ignore[arg-type]
                           centre_grad=c.centre_grad)


def parse_start(start: Start | str) -> int | None:
    """The CRN window R of a start (``"crn10"`` -> 10), None for zero / random."""
    return Start.parse(start).window


@dataclass(frozen=True)
class AttackSpec:
    """One attack configuration.

    Attributes:
        attack: "fgsm", "bim" or "pgd" (FGSM is one step of size eps: ``alpha`` and ``steps`` are ignored), an
            adaptive attack ("eot-pgd", "ensemble-pgd") or the gradient-free "square".
        eps: L-inf budget in [0, 1] pixel units.
        alpha: step size (BIM / PGD; None for FGSM and Square).
        steps: K, the number of sign-gradient steps (BIM / PGD); Square's queries.
        start: a :class:`Start`, or its name ("zero", "random", "crnR"); Square's is always "random" (its stripes).
        seed: root of the random start's generator.
        centre_grad: centre the attack's gradients (the CRN updates are centred or not by the run's config).
        labels: "pred" (the attacker's own clean predictions, default) or "true".
        samples: EOT-PGD only: K, the noisy copies of the attacker's model a step (:mod:`fedsafe.attacks.eot`).
        noise_std: EOT-PGD only: the downlink noise s_D the attacker assumes; None: the run's own (its privacy
            report's ``sigma_downlink``).
        surrogates: ensemble-PGD only: R, the copies the attacker received over the run's last R rounds
            (:mod:`fedsafe.attacks.ensemble`; within ``federation.keep_received_rounds``).
    """

    attack: str = "pgd"
    eps: float = DEFAULT_EPS
    alpha: float | None = DEFAULT_ALPHA
    steps: int = DEFAULT_STEPS
    start: Start | str = field(default_factory=Start.uniform)
    seed: int = 0
    centre_grad: bool = False
    labels: Literal["pred", "true"] = "pred"
    samples: int = 1
    noise_std: float | None = None
    surrogates: int | None = None

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS and not self.adaptive and not self.query:  # one message naming every attack
            known = ", ".join(sorted(ATTACKS | ADAPTIVE_ATTACKS | QUERY_ATTACKS))
            raise ValueError(f"unknown attack {self.attack!r}; known: {known}")
        _check_adaptive(self)
        object.__setattr__(self, "start", Start.parse(self.start))
        check_eps(self.eps)
        if self.attack == "fgsm":
            object.__setattr__(self, "alpha", None)
            object.__setattr__(self, "steps", 1)
        elif self.query:
            _check_query(self)
            object.__setattr__(self, "alpha", None)
        else:
            check_alpha(self.alpha, who=self.attack)
        check_steps(self.steps, what="queries" if self.query else "steps")
        if self.labels not in ("pred", "true"):
            raise ValueError(f'labels must be "pred" or "true", got {self.labels!r}')
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @property
    def window(self) -> int | None:
        """R of a CRN start, else None."""
        return self.start.window  # type: ignore[union-attr]

    @property
    def adaptive(self) -> bool:
        """An insider's adaptive attack (EOT-PGD, ensemble-PGD): it needs more than the final model."""
        return self.attack in ADAPTIVE_ATTACKS

    @property
    def query(self) -> bool:
        """A gradient-free attack (Square): it reads only logits, ``steps`` are its queries."""
        return self.attack in QUERY_ATTACKS

    @property
    def passes_per_image(self) -> int:
        """Forward+backward passes an image of the attack itself: steps x K (EOT) or x R (ensemble); 0 for a
        gradient-free attack (at most ``steps`` + 1 forward passes)."""
        if self.query:
            return 0
        per_step = self.samples if self.attack == "eot-pgd" else self.surrogates or 1
        return self.steps * per_step

    @property
    def label(self) -> str:
        """The papers' name: "PGD-20", "PGD-1+CRN10", "FGSM+CRN5", "BIM-10"; the adaptive attacks "EOT8-PGD-20"
        (K = 8 noisy copies a step) and "ENS5-PGD-20" (the copies of the last 5 rounds)."""
        if self.attack == "eot-pgd":
            name = f"EOT{self.samples}-PGD-{self.steps}"
        elif self.attack == "ensemble-pgd":
            name = f"ENS{self.surrogates}-PGD-{self.steps}"
        elif self.query:
            name = f"{self.attack.capitalize()}-{self.steps}"
        else:
            name = "FGSM" if self.attack == "fgsm" else f"{self.attack.upper()}-{self.steps}"
        return name + (f"+{self.start.name.upper()}" if self.window else "")  # type: ignore[union-attr]

    def to_dict(self) -> dict[str, Any]:
        """The flat record of the spec (in every result's JSON and its cache key). A CRN start's budget appears
        as ``crn_eps`` unless it equals the attack's eps (the only CRN budget before it could be named)."""
        s: Start = self.start  # type: ignore[assignment]
        out = {"attack": self.attack, "eps": self.eps, "alpha": self.alpha, "steps": self.steps, "start": s.name,
               "seed": self.seed, "centre_grad": self.centre_grad, "labels": self.labels, "crn_alpha": s.alpha,
               "crn_steps": s.steps}
        if s.kind == "crn" and s.eps != self.eps:
            out["crn_eps"] = s.eps  # None: the run's crn.eps
        if self.attack == "eot-pgd":  # only there: every other attack keeps its record and key
            out.update(samples=self.samples, noise_std=self.noise_std)
        elif self.attack == "ensemble-pgd":
            out["surrogates"] = self.surrogates
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttackSpec:
        """The inverse of :meth:`to_dict`."""
        start = Start.parse(d["start"])
        if start.kind == "crn":
            crn_eps = d["crn_eps"] if "crn_eps" in d else (d["eps"] or None)  # before crn_eps: the attack's eps
            start = Start.crn(start.window, eps=crn_eps, alpha=d.get("crn_alpha"),  # type: ignore[arg-type]
                              steps=d.get("crn_steps"), final=start.final)
        return cls(attack=d["attack"], eps=d["eps"], alpha=d.get("alpha"), steps=d["steps"], start=start,
                   seed=d.get("seed", 0), centre_grad=d.get("centre_grad", False), labels=d.get("labels", "pred"),
                   samples=d.get("samples", 1), noise_std=d.get("noise_std"), surrogates=d.get("surrogates"))

    def key(self, **context: Any) -> str:
        """A file name: the attack and start, then a hash of every setting and of ``context``."""
        blob = json.dumps({"spec": self.to_dict(), "context": context}, sort_keys=True, default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        return f"{self.attack}{'' if self.attack == 'fgsm' else self.steps}-{self.start}-{digest}"

    def replace(self, **changes: Any) -> AttackSpec:
        return dataclasses.replace(self, **changes)


def _check_query(spec: AttackSpec) -> None:
    """A gradient-free attack starts from its own random point and follows no gradient: a zero or CRN start,
    centring, or a step size other than the default is a setting it would silently ignore, so it is refused."""
    start: Start = spec.start  # type: ignore[assignment]
    if start.kind != "uniform":
        raise ValueError(f"{spec.attack} starts from its own random stripes: start must be random, got {start.name!r}")
    if spec.centre_grad:
        raise ValueError(f"{spec.attack} takes no gradient: centre_grad must be False")
    if spec.alpha not in (None, DEFAULT_ALPHA):
        raise ValueError(f"{spec.attack} takes no step size: alpha must be None, got {spec.alpha}")


def _check_adaptive(spec: AttackSpec) -> None:
    """The adaptive settings: K >= 1 and s_D >= 0 for EOT-PGD, R >= 1 for ensemble-PGD, none for the others."""
    if spec.attack == "eot-pgd":
        if isinstance(spec.samples, bool) or not isinstance(spec.samples, int) or spec.samples < 1:
            raise ValueError(f"samples (K, noisy copies a step) must be an integer >= 1, got {spec.samples!r}")
        if spec.noise_std is not None and not spec.noise_std >= 0:
            raise ValueError(f"noise_std (s_D) must be >= 0 or None (the run's), got {spec.noise_std}")
    elif spec.samples != 1 or spec.noise_std is not None:
        raise ValueError(f"samples and noise_std are EOT-PGD settings, not {spec.attack}'s")
    if spec.attack == "ensemble-pgd":
        if isinstance(spec.surrogates, bool) or not isinstance(spec.surrogates, int) or spec.surrogates < 1:
            raise ValueError(f"ensemble-pgd needs surrogates = R >= 1 (the copies of the last R rounds), got "
                             f"{spec.surrogates!r}")
    elif spec.surrogates is not None:
        raise ValueError(f"surrogates is an ensemble-PGD setting, not {spec.attack}'s")


def sweep(attack: str = "pgd", *, eps: float | Iterable[float] = DEFAULT_EPS,
          alpha: float | None | Iterable[float] = DEFAULT_ALPHA, steps: int = DEFAULT_STEPS,
          start: Start | str | Iterable[Start | str] = "random", seed: int | Iterable[int] = 0,
          **kw: Any) -> list[AttackSpec]:
    """Every combination of the given eps, alpha, start and seed values (FGSM ignores alpha).

    >>> [s.label for s in sweep("pgd", eps=[0.01, 0.05], start=["random", "crn5"])]
    ['PGD-20', 'PGD-20', 'PGD-20+CRN5', 'PGD-20+CRN5']
    """

    def values(v: Any) -> list[Any]:
        return [v] if v is None or isinstance(v, (str, int, float, Start)) else list(v)

    alphas = [None] if attack == "fgsm" else values(alpha)
    specs = [AttackSpec(attack=attack, eps=float(e), alpha=a, steps=steps, start=s, seed=int(sd), **kw)
             for s in values(start) for e in values(eps) for a in alphas for sd in values(seed)]
    if not specs:
        raise ValueError("the sweep is empty: give at least one eps, alpha, start and seed")
    return specs
