"""Cross-round noise inside the federation (SPEC section 7): a client hook that accumulates CRN online, and
the replay of the same computation afterwards from the received copies a run directory keeps.

Online. :class:`CrnClientHook` is a :class:`fedsafe.federation.hooks.ClientHook`. Every client accumulates
CRN on its own attack/test set ``X_i``, so the attacker role can cycle over all clients from one training run
(CRN does not change training: the hook only reads the received copy). For each window R (CRN5: R = 5,
CRN10: R = 10) it keeps a separate buffer, absorbing the received copy of each round t in [T - R + 1, T]:
``crn_update`` with ``steps`` (authors: j = E) centred sign steps. The buffers live in the client's persistent
state under ``crn<R>.<field>`` (the fields of :meth:`CrnState.to_state_dict`, plus ``crn<R>.last_round``), so
they are checkpointed with the run and a resumed run ends bit-identical. The final downlink (round T + 1,
the client's final model) is not absorbed: the attack itself starts from that model.

Replay. :func:`replay_crn` runs the same :func:`fedsafe.attacks.crn.crn_replay` over the copies saved in
``models/received/round_t/client_i.pt`` for the last R rounds; with the same settings it equals the online
buffer bit for bit, and it lets a sweep over eps, alpha or R reuse one training run.

Precision: fp32 by default (the online and replayed buffers must agree exactly); "bf16" is allowed.

>>> # hook = CrnClientHook.from_config(cfg, data, spec)   # wired by defenses.registry.hooks_for
>>> # Hooks(client=hook); after the run: checkpoint["client_states"][i]["crn10.delta"]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import yaml
from torch import nn

from ..runs.atomic import torch_load
from ..runs.rundir import RunDir
from .crn import CrnState, crn_absorbs_round, crn_alpha, crn_replay

__all__ = ["CrnClientHook", "crn_key", "crn_state_from", "replay_crn", "run_model_factory"]

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
        windows: the R of each buffer, e.g. (5, 10).
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
        windows: Sequence[int] = (5, 10),
        eps: float = 0.05,
        steps: int = 5,
        alpha: float | None = None,
        centre_grad: bool = True,
        precision: str = "fp32",
        batch_size: int | None = None,
    ) -> None:
        if total_rounds < 1:
            raise ValueError(f"total_rounds must be >= 1, got {total_rounds}")
        windows = tuple(sorted({int(w) for w in windows}))
        if not windows or windows[0] < 1 or windows[-1] > total_rounds:
            raise ValueError(f"CRN windows must be in [1, {total_rounds}] (the number of rounds), got {list(windows)}")
        if not attack_sets:
            raise ValueError("CRN needs one attack set per client")
        self.alpha = crn_alpha(eps=eps, steps=steps, alpha=alpha)
        self.model_factory, self.attack_sets = model_factory, tuple(attack_sets)
        self.total_rounds, self.windows = int(total_rounds), windows
        self.eps, self.steps, self.centre_grad = float(eps), int(steps), bool(centre_grad)
        self.precision, self.batch_size = precision, batch_size
        self._model: nn.Module | None = None

    @classmethod
    def from_config(cls, cfg, data, spec, *, precision: str = "fp32") -> CrnClientHook:
        """The hook of ``cfg.crn`` for the federation ``data`` (attack sets: ``data.client_test[i].x``)."""
        from ..experiments.train import model_factory  # local: experiments imports the defences registry

        c = cfg.crn
        return cls(model_factory=model_factory(cfg, len(data.class_names), data.in_channels),
                   attack_sets=[s.x for s in data.client_test], total_rounds=spec.rounds, windows=c.windows,
                   eps=c.eps, steps=c.steps or cfg.train.local_epochs, alpha=c.alpha, centre_grad=c.centre_grad,
                   precision=precision)

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


def run_model_factory(run_dir: str | Path, *, num_classes: int | None = None,
                      in_channels: int | None = None) -> Callable[[], nn.Module]:
    """The model factory of the run in ``run_dir`` (its ``config.yaml``); the number of classes and input
    channels are read from client 0's final model if not given (the last layer's bias / first conv's weight)."""
    from ..config import ExperimentConfig
    from ..experiments.train import model_factory

    rd = RunDir(Path(run_dir))
    if not rd.config.is_file():
        raise FileNotFoundError(f"{rd.config}: no config.yaml: not a fedsafe run directory")
    cfg = ExperimentConfig.model_validate(yaml.safe_load(rd.config.read_text()))
    if num_classes is None or in_channels is None:
        state = _load_state(_first_existing(rd))
        weights = [v for v in state.values() if v.dim() == 4]
        num_classes = num_classes or int(list(state.values())[-1].shape[0])
        in_channels = in_channels or int(weights[0].shape[1])
    return model_factory(cfg, num_classes, in_channels)


def _first_existing(rd: RunDir) -> Path:
    if rd.final_model(0).is_file():
        return rd.final_model(0)
    rounds = rd.received_rounds()
    if rounds:
        return rd.received(rounds[-1], 0)
    raise FileNotFoundError(f"{rd.root}: no final or received model to read the model's shape from")


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    return torch_load(path)


def _total_rounds(rd: RunDir) -> int:
    if rd.checkpoint.is_file():
        return int(torch_load(rd.checkpoint)["rounds"])
    if rd.config.is_file():
        return int(yaml.safe_load(rd.config.read_text())["train"]["rounds"])
    raise FileNotFoundError(f"{rd.root}: neither checkpoint.pt nor config.yaml: cannot tell the number of rounds")


def replay_crn(
    run_dir: str | Path,
    *,
    client: int,
    window: int,
    eps: float,
    steps: int,
    x: torch.Tensor,
    alpha: float | None = None,
    centre_grad: bool = True,
    model_factory: Callable[[], nn.Module] | None = None,
    total_rounds: int | None = None,
    precision: str = "fp32",
    batch_size: int | None = None,
) -> torch.Tensor:
    """The CRN delta of client ``client`` on its attack set ``x`` over the last ``window`` rounds, replayed from
    ``RUN/models/received/round_t/client_i.pt`` (t = T - R + 1 .. T, oldest first).

    ``model_factory`` defaults to the run's own (:func:`run_model_factory`); ``total_rounds`` (T) to the
    checkpoint's. With the settings of the online hook the result equals its buffer bit for bit.
    Raises FileNotFoundError naming the first missing copy if the run kept fewer than R rounds.
    """
    rd = RunDir(Path(run_dir))
    total = _total_rounds(rd) if total_rounds is None else int(total_rounds)
    if not 1 <= window <= total:
        raise ValueError(f"CRN window must be in [1, {total}] (the run's rounds), got {window}")
    paths = [rd.received(t, client) for t in range(total - window + 1, total + 1)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        kept = rd.received_rounds()
        held = f"rounds {kept[0]}..{kept[-1]}" if kept else "no rounds"
        raise FileNotFoundError(f"CRN{window} replay needs the received copies of rounds {total - window + 1}.."
                                f"{total}, but {missing[0]} is missing (the run kept {held}; raise "
                                f"federation.keep_received_rounds)")
    factory = model_factory or run_model_factory(rd.root, in_channels=int(x.shape[1]))
    model = factory()

    def models():
        for p in paths:
            model.load_state_dict(torch_load(p))
            yield model

    return crn_replay(models(), x, eps=eps, steps=steps, alpha=alpha, centre_grad=centre_grad, precision=precision,
                      batch_size=batch_size)
