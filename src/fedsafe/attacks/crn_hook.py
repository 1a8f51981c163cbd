"""Cross-round noise inside the federation (design §7): a client hook that accumulates CRN online, and
the replay of the same computation afterwards from the received copies a run directory keeps.

Online. :class:`CrnClientHook` is a :class:`fedsafe.federation.hooks.ClientHook`. Every client accumulates
CRN on its own attack/test set ``X_i``, so the attacker role can cycle over all clients from one training run
(CRN does not change training: the hook only reads the received copy). For each window R (CRN5: R = 5,
CRN10: R = 10) it keeps a separate buffer, absorbing the received copy of each round t in [T - R + 1, T]:
``crn_update`` with ``steps`` (authors: j = E) centred sign steps. The buffers live in the client's persistent
state under ``crn<R>.<field>`` (the fields of :meth:`CrnState.to_state_dict`, plus ``crn<R>.last_round``), so
they are checkpointed with the run and a resumed run ends bit-identical. The final downlink (round T + 1,
the client's final model) is not absorbed: the attack itself starts from that model.

Replay. :func:`replay_crn` runs the same :func:`fedsafe.attacks.crn.crn_replay` over the copies a run kept of the
last R rounds (the caller reads them from the run directory); with the same settings it equals the online buffer
bit for bit, and it lets a sweep over eps, alpha or R reuse one training run.

Precision: fp32 by default (the online and replayed buffers must agree exactly); "bf16" is allowed.

Example::

    hook = fedsafe.build.crn_hook(cfg, data, spec)   # wired by fedsafe.build.build_hooks
    Hooks(client=hook); after the run: checkpoint.client_states[i]["crn10.delta"]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .budget import check_windows
from .crn import CrnState, crn_absorbs_round, crn_alpha, crn_replay

__all__ = ["CrnClientHook", "crn_key", "crn_state_from", "replay_crn"]

log = logging.getLogger(__name__)

_FIELDS = ("delta", "rounds", "eps", "alpha", "steps", "centre_grad")


def crn_key(window: int, field: str = "delta") -> str:
    """The client-state key of window ``window``'s ``field``: ``crn_key(10) == "crn10.delta"``."""
    return f"crn{int(window)}.{field}"


def crn_state_from(client_state: Mapping[str, torch.Tensor], window: int) -> CrnState | None:
    """The :class:`CrnState` of window ``window`` stored in a client's state, or None if there is none."""
    if crn_key(window) not in client_state:
        return None
    return CrnState.from_state_dict({f: client_state[crn_key(window, f)] for f in _FIELDS})


class CrnClientHook:
    """Online CRN for every client (module docstring): one buffer per window in ``windows``.

    Args:
        model_factory: builds the federation's model; the received copy is loaded into it.
        attack_sets: one (n_i, C, H, W) tensor in [0, 1] per client, its attack/test set.
        total_rounds: T; rounds t > T (the final downlink) are ignored.
        windows: the R of each buffer, e.g. (5, 10) (the config's ``crn.windows``).
        eps, steps, alpha, centre_grad: the CRN update (alpha None: eps / steps).
        precision: "fp32" (default, exact) or "bf16".
        batch_size: images per attack batch (None: the whole set at once); replay must use the same.
    """

    name = "crn"

    def __init__(
        self,
        *,
        model_factory: Callable[[], nn.Module],
        attack_sets: Sequence[torch.Tensor],
        total_rounds: int,
        windows: Sequence[int],
        eps: float,
        steps: int,
        alpha: float | None = None,
        centre_grad: bool = True,
        precision: str = "fp32",
        batch_size: int | None = None,
    ) -> None:
        if total_rounds < 1:
            raise ValueError(f"total_rounds must be >= 1, got {total_rounds}")
        windows = check_windows(windows, total_rounds=total_rounds)
        if not attack_sets:
            raise ValueError("CRN needs one attack set per client")
        self.alpha = crn_alpha(eps=eps, steps=steps, alpha=alpha)
        self.model_factory, self.attack_sets = model_factory, tuple(attack_sets)
        self.total_rounds, self.windows = int(total_rounds), windows
        self.eps, self.steps, self.centre_grad = float(eps), int(steps), bool(centre_grad)
        self.precision, self.batch_size = precision, batch_size
        self._model: nn.Module | None = None

    def _load(self, received: Mapping[str, torch.Tensor]) -> nn.Module:
        if self._model is None:
            self._model = self.model_factory()
        self._model.load_state_dict(received)
        return self._model

    def on_receive(self, received: Mapping[str, torch.Tensor], *, round_: int, client: int,
                   client_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Absorb client ``client``'s copy of round ``round_`` into every window that covers the round."""
        if round_ > self.total_rounds:  # the final downlink: the attack starts from this model
            return client_state
        if not 0 <= client < len(self.attack_sets):
            raise ValueError(f"client {client} has no attack set ({len(self.attack_sets)} clients)")
        active = [w for w in self.windows if crn_absorbs_round(round_, total_rounds=self.total_rounds, window=w)]
        if not active:
            return client_state
        x, model = self.attack_sets[client], self._load(received)
        new = dict(client_state)
        for w in active:
            state = crn_state_from(client_state, w)
            first = self.total_rounds - w + 1
            if state is None:
                state = CrnState.zeros(x, eps=self.eps, steps=self.steps, alpha=self.alpha,
                                       centre_grad=self.centre_grad)
            if state.rounds != round_ - first:
                raise ValueError(f"client {client}: CRN{w} buffer has absorbed {state.rounds} rounds but round "
                                 f"{round_} is round {round_ - first + 1} of its window (state from another run?)")
            state.absorb(model, x, precision=self.precision, batch_size=self.batch_size)
            new.update({crn_key(w, k): v for k, v in state.to_state_dict().items()})
            new[crn_key(w, "last_round")] = torch.tensor(round_, dtype=torch.int64)
        return new


def replay_crn(
    received: Iterable[Mapping[str, torch.Tensor]],
    x: torch.Tensor,
    *,
    model_factory: Callable[[], nn.Module],
    eps: float,
    steps: int,
    alpha: float | None = None,
    centre_grad: bool = True,
    precision: str = "fp32",
    batch_size: int | None = None,
) -> torch.Tensor:
    """The CRN delta of a client on its attack set ``x`` after absorbing ``received`` (the state dicts of the copies
    it received in the last R rounds, oldest first), each loaded into one model from ``model_factory``.

    With the settings of the online hook the result equals its buffer bit for bit.
    """
    model = model_factory()

    def models():
        for state in received:
            model.load_state_dict(state)
            yield model

    return crn_replay(models(), x, eps=eps, steps=steps, alpha=alpha, centre_grad=centre_grad, precision=precision,
                      batch_size=batch_size)
