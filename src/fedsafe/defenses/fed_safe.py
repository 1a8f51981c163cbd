"""``fed-safe``: adversarial adaptation of each client's own noisy copy (Fed-Safe, section 3; SPEC section 5).

Darzi, Dubost, Sijtsema, van Ooijen, "Fed-Safe: Securing Federated Learning in Healthcare Against Adversarial
Attacks". The server makes client i's copy w_t + n_i (distributed downlink noise, :func:`fedsafe.federation.round.
downlink_copy`), crafts PGD examples against *that copy* from a fraction f of its server data set, fine-tunes the
copy on them (:func:`fedsafe.defenses.adaptation.adversarial_finetune`) and sends client i its own adapted copy.
The aggregated global model itself is left as it is; uplink clipping and noise are the federation's.

Cost: one adaptation per client per downlink (every round, and the final downlink T + 1), i.e. N times the server
cost of ``adversarial-training`` per round.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..config import ExperimentConfig
from ..federation.data import FederatedData
from ..federation.hooks import Hooks, HookStats
from ..federation.simulator import FederationSpec
from .adaptation import AdaptationSpec, check_server_data, finetune_with, server_hook_inputs

__all__ = ["FedSafeHook", "build_fed_safe"]

StateDict = dict[str, torch.Tensor]


class FedSafeHook:
    """Server hook: adversarially fine-tune each client's noisy downlink copy against itself.

    Args:
        model: the server's own model instance (its parameters are overwritten on every call).
        x, y: the server's adaptation images (N, C, H, W) in [0, 1] and true labels (N,).
        adaptation: PGD and fine-tuning settings.
        seed: root seed; client c's adaptation in round r draws from streams keyed (seed, "fed-safe-*", r, c).
    """

    name = "fed-safe"

    def __init__(self, *, model: nn.Module, x: torch.Tensor, y: torch.Tensor, adaptation: AdaptationSpec,
                 seed: int) -> None:
        check_server_data(x, y, defence="fed-safe")
        self.model, self.x, self.y, self.adaptation, self.seed = model, x, y, adaptation, seed

    def after_aggregation(self, global_state: Mapping[str, torch.Tensor], *, round_: int
                          ) -> tuple[StateDict, HookStats]:
        """The global model is kept as aggregated (the adaptation is per client, on the downlink)."""
        return dict(global_state), {}

    def adapt_downlink(self, global_state: Mapping[str, torch.Tensor], copy: Mapping[str, torch.Tensor], *,
                       round_: int, client: int) -> tuple[StateDict, HookStats]:
        return finetune_with(self.adaptation, self.model, copy, self.x, self.y, seed=self.seed, round_=round_,
                             client=client, purpose=self.name)


def build_fed_safe(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> Hooks:
    """The registry's builder: the fraction ``cfg.defense.fraction`` of ``data.server``, the run's model. Downlink
    noise is whatever the federation sets (s_D = 0 gives a per-client adaptation of identical copies)."""
    hook = FedSafeHook(**server_hook_inputs(cfg, data, spec))  # type: ignore[arg-type]
    return Hooks(server=hook)
