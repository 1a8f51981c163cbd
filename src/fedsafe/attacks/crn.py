"""Cross-round noise (CRN): Darzi et al., "The hidden adversarial vulnerabilities of medical federated
learning" (the CRN paper, Algorithm 1 and eqs. 3-4); design §7.

The attacker m trains as a benign client. It keeps one perturbation delta per image of its attack set X_m,
delta = 0 at first. In each of the last R rounds, after receiving its copy w~_m^(t), it runs ``steps``
(authors: E) centred sign-gradient steps on

    L(delta) = CE( f(x + delta; w~_m^(t)), argmax f(x; w~_m^(t)) ),

projecting delta to the eps-ball and x + delta to [0, 1] after every step; delta persists from round to round.
At test time delta is the ``start`` of FGSM / BIM / PGD on the attacker's final model.

A CRN update is the shared step loop (:func:`fedsafe.attacks.iterative.iterative_attack`) with the model's own
clean predictions as labels, ``start=delta`` and centring on: CRN is a start point, not a separate attack.

Step size. The paper does not give the CRN step size. The default is ``alpha = eps / steps``: one round can
move a pixel by at most eps, i.e. half the ball, so a single round cannot overwrite what earlier rounds
accumulated (it takes two rounds to flip a saturated pixel), while R >= 2 rounds can still reach any point of
the ball. Pass ``alpha`` to use another value (e.g. the attack's own step, as the authors' evaluation used
0.001 with eps 0.05).

Online (:class:`CrnState`, round by round) and :func:`crn_replay` (from the stored models) run the same
function, so they agree bit for bit.

>>> from fedsafe.models.cnn import PaperCNN
>>> x = torch.rand(3, 1, 16, 16)
>>> state = CrnState.zeros(x, eps=0.05, steps=4)
>>> for _ in range(2):  # two rounds, each with the copy received that round
...     state.absorb(PaperCNN(num_classes=2, image_size=16, width=0.05), x)
>>> state.rounds, bool(state.delta.abs().max() <= 0.05 + 1e-6)
(2, True)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from fedsafe.attacks.budget import check_alpha, check_eps, check_steps
from fedsafe.attacks.iterative import attack_in_batches, iterative_attack

__all__ = ["CrnState", "crn_absorbs_round", "crn_alpha", "crn_replay", "crn_update"]


def crn_alpha(*, eps: float, steps: int, alpha: float | None = None) -> float:
    """The CRN step size: ``alpha`` if given, else the default ``eps / steps`` (module docstring)."""
    check_eps(eps, positive=True)
    check_steps(steps)
    return eps / steps if alpha is None else float(alpha)


def crn_absorbs_round(t: int, *, total_rounds: int, window: int) -> bool:
    """Whether round ``t`` (1-based, of ``total_rounds``) is one of the last ``window`` rounds (CRN5: 5)."""
    if not 1 <= t <= total_rounds or window < 0:
        raise ValueError(f"need 1 <= t <= total_rounds and window >= 0, got t={t}, T={total_rounds}, R={window}")
    return t > total_rounds - window


def crn_update(
    model: nn.Module,
    x: torch.Tensor,
    delta: torch.Tensor,
    *,
    eps: float,
    steps: int,
    alpha: float | None = None,
    centre_grad: bool = True,
    precision: str = "fp32",
    batch_size: int | None = None,
) -> torch.Tensor:
    """One round of CRN: ``steps`` (centred) sign steps from ``delta`` maximising
    CE(f(x + delta; w), argmax f(x; w)) with ``model`` = the copy w received this round.

    Shapes: x, delta (n, C, H, W); returns the new delta (n, C, H, W), |delta| <= eps, x + delta in [0, 1].
    Neither ``x`` nor ``delta`` is modified.
    """
    kwargs = {
        "eps": eps,
        "alpha": crn_alpha(eps=eps, steps=steps, alpha=alpha),
        "steps": steps,
        "centre_grad": centre_grad,
        "precision": precision,
    }
    if batch_size is None:
        return iterative_attack(model, x, "pred", start=delta, **kwargs).delta
    return attack_in_batches(iterative_attack, model, x, "pred", batch_size=batch_size, start=delta,
                             **kwargs).delta


class CrnState:
    """The attacker's CRN buffer: one delta per image of its attack set and the rounds absorbed so far.

    Persist it with :meth:`to_state_dict` (a flat dict of tensors: fits a simulator's per-client state or
    a Flower ``ArrayRecord`` in ``context.state``) and :meth:`from_state_dict`.
    """

    def __init__(
        self,
        delta: torch.Tensor,
        *,
        eps: float,
        steps: int,
        alpha: float | None = None,
        centre_grad: bool = True,
        rounds: int = 0,
    ) -> None:
        self.alpha = crn_alpha(eps=eps, steps=steps, alpha=alpha)
        check_alpha(self.alpha)
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        if delta.abs().max() > eps * (1 + 1e-6) + 1e-7:
            raise ValueError(f"stored delta exceeds the budget eps={eps}")
        self.delta, self.eps, self.steps = delta.detach().clone(), float(eps), int(steps)
        self.centre_grad, self.rounds = bool(centre_grad), int(rounds)

    @classmethod
    def zeros(
        cls, x: torch.Tensor, *, eps: float, steps: int, alpha: float | None = None, centre_grad: bool = True
    ) -> CrnState:
        """A fresh buffer (delta = 0) for the attack set ``x`` (n, C, H, W)."""
        return cls(torch.zeros_like(x), eps=eps, steps=steps, alpha=alpha, centre_grad=centre_grad)

    def absorb(
        self, model: nn.Module, x: torch.Tensor, *, precision: str = "fp32", batch_size: int | None = None
    ) -> None:
        """Update delta with this round's received model (:func:`crn_update`); count the round."""
        self.delta = crn_update(model, x, self.delta, eps=self.eps, steps=self.steps, alpha=self.alpha,
                                centre_grad=self.centre_grad, precision=precision, batch_size=batch_size)
        self.rounds += 1

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        """A flat dict of tensors (a copy; delta stays on its device): delta, rounds, eps, alpha, steps,
        centre_grad."""
        return {
            "delta": self.delta.detach().clone(),
            "rounds": torch.tensor(self.rounds, dtype=torch.int64),
            "eps": torch.tensor(self.eps, dtype=torch.float64),
            "alpha": torch.tensor(self.alpha, dtype=torch.float64),
            "steps": torch.tensor(self.steps, dtype=torch.int64),
            "centre_grad": torch.tensor(self.centre_grad),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> CrnState:
        missing = {"delta", "rounds", "eps", "alpha", "steps", "centre_grad"} - set(state)
        if missing:
            raise ValueError(f"CRN state dict lacks {sorted(missing)}")
        return cls(torch.as_tensor(state["delta"]), eps=float(state["eps"]), steps=int(state["steps"]),
                   alpha=float(state["alpha"]), centre_grad=bool(state["centre_grad"]),
                   rounds=int(state["rounds"]))

    def __repr__(self) -> str:
        return (f"CrnState(n={self.delta.shape[0]}, rounds={self.rounds}, eps={self.eps}, alpha={self.alpha}, "
                f"steps={self.steps}, centre_grad={self.centre_grad})")


def crn_replay(
    models: Iterable[nn.Module],
    x: torch.Tensor,
    *,
    eps: float,
    steps: int,
    alpha: float | None = None,
    centre_grad: bool = True,
    precision: str = "fp32",
    batch_size: int | None = None,
) -> torch.Tensor:
    """The CRN delta after absorbing ``models`` (the copies received in the last R rounds, oldest first).

    Equal, bit for bit, to running :class:`CrnState` online with the same models and settings.
    """
    state = CrnState.zeros(x, eps=eps, steps=steps, alpha=alpha, centre_grad=centre_grad)
    for model in models:
        state.absorb(model, x, precision=precision, batch_size=batch_size)
    return state.delta
