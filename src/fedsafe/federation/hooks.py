"""The federation's four extension points, as small protocols (a defense or an attacker is a hook,
not a subclass of the server).

* ``ServerHook``: runs on the server after aggregation, and on each client's downlink copy
  (the defenses of design §5).
* ``LossFn`` (see :mod:`fedsafe.federation.client`): replaces the client's training loss
  (client-side adversarial training).
* ``ClientHook``: sees the copy a client receives every round and keeps a per-client state of tensors that
  persists across rounds and is checkpointed with the run (the CRN attacker of design §7).
* ``UploadHook``: sees what a client is about to send and may replace it (a model-poisoning client, or a fault
  injected by a test: NaN, Inf, a huge update); the server's screening must catch what it sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch

from .client import LossFn, cross_entropy_loss

__all__ = ["ServerHook", "ClientHook", "Hooks", "HookStats", "UploadHook"]

HookStats = dict[str, float]


class ServerHook(Protocol):
    name: str

    def after_aggregation(self, global_state: Mapping[str, torch.Tensor], *, round_: int
                          ) -> tuple[dict[str, torch.Tensor], HookStats]:
        """The global model after FedAvg -> the model the server keeps (and the cost spent)."""
        ...

    def adapt_downlink(self, global_state: Mapping[str, torch.Tensor], copy: Mapping[str, torch.Tensor], *,
                       round_: int, client: int) -> tuple[dict[str, torch.Tensor], HookStats]:
        """Client ``client``'s (noisy) copy -> the model actually sent to it (and the cost spent)."""
        ...


class ClientHook(Protocol):
    name: str

    def on_receive(self, received: Mapping[str, torch.Tensor], *, round_: int, client: int,
                   client_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Called when ``client`` receives its copy in round ``round_``; returns its new persistent state."""
        ...


class UploadHook(Protocol):
    name: str

    def on_upload(self, upload: Mapping[str, torch.Tensor], *, round_: int, client: int
                  ) -> dict[str, torch.Tensor]:
        """Client ``client``'s upload of round ``round_`` (after clipping and noise) -> what it really sends."""
        ...


@dataclass(frozen=True)
class Hooks:
    server: ServerHook | None = None
    client: ClientHook | None = None
    loss_fn: LossFn = field(default=cross_entropy_loss)
    upload: UploadHook | None = None
