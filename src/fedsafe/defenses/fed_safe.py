"""``fed-safe``: adversarial adaptation of each client's own noisy copy (Fed-Safe, section 3; design §5).

Darzi, Dubost, Sijtsema, van Ooijen, "Fed-Safe: Securing Federated Learning in Healthcare Against Adversarial
Attacks". The server makes client i's copy w_t + n_i (distributed downlink noise, :func:`fedsafe.federation.round.
downlink_copy`), crafts PGD examples against *that copy* from round(f * |D_i|) images of its server data set,
fine-tunes the copy on them (:func:`fedsafe.defenses.adaptation.adversarial_finetune`, client i's own random draws)
and sends client i its own adapted copy. The aggregated global model itself is left as it is; uplink clipping and
noise are the federation's. With s_D = 0 this is the papers' adversarial-training baseline
(:mod:`fedsafe.defenses.adversarial_training`).

Cost: one adaptation per client per downlink (every round, and the final downlink T + 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..config import DefenseConfig
from ..federation.federated_data import FederatedData, Split
from ..federation.federation_spec import FederationSpec, LocalSpec
from ..federation.hooks import Hooks, HookStats
from .adaptation import AdaptationPlan, PgdLoss, adaptation_local_spec, adaptation_plan, adversarial_finetune, pgd_loss

__all__ = ["CopyAdaptationHook", "build_fed_safe"]

StateDict = dict[str, torch.Tensor]


class CopyAdaptationHook:
    """Server hook: adversarially fine-tune each client's downlink copy against itself, on that client's data.

    Args:
        name: the defense's name; also the purpose of its random streams, keyed (seed, name, round, client).
        model: the server's own model instance (its parameters are overwritten on every call).
        subsets: client i's adaptation images (x (N_i, C, H, W) in [0, 1], true labels y).
        local: the fine-tuning (epochs, batch size, optimiser, precision, device).
        loss: the PGD training loss.
        seed: root seed.
    """

    def __init__(self, *, name: str, model: nn.Module, subsets: Sequence[Split], local: LocalSpec, loss: PgdLoss,
                 seed: int) -> None:
        if not subsets or any(len(s) == 0 for s in subsets):
            raise ValueError(f"{name} needs non-empty adaptation data for every client")
        self.name, self.model, self.subsets = name, model, tuple(subsets)
        self.local, self.loss, self.seed = local, loss, seed

    def after_aggregation(self, global_state: Mapping[str, torch.Tensor], *, round_: int
                          ) -> tuple[StateDict, HookStats]:
        """The global model is kept as aggregated (the adaptation is per client, on the downlink)."""
        return dict(global_state), {}

    def adapt_downlink(self, global_state: Mapping[str, torch.Tensor], copy: Mapping[str, torch.Tensor], *,
                       round_: int, client: int) -> tuple[StateDict, HookStats]:
        sub = self.subsets[client]
        return adversarial_finetune(self.model, copy, sub.x, sub.y, local=self.local, loss=self.loss, seed=self.seed,
                                    round_=round_, client=client, purpose=self.name)


def build_copy_adaptation(name: str, defense: DefenseConfig, data: FederatedData, spec: FederationSpec,
                          model_factory: Callable[[], nn.Module]) -> tuple[CopyAdaptationHook, AdaptationPlan]:
    """The hook of a per-client server defense, and its adaptation data."""
    plan = adaptation_plan(defense, data, seed=spec.seed)
    hook = CopyAdaptationHook(name=name, model=model_factory(), subsets=plan.subsets,
                              local=adaptation_local_spec(defense, spec.local),
                              loss=pgd_loss(defense, spec.local.precision), seed=spec.seed)
    return hook, plan


def build_fed_safe(defense: DefenseConfig, data: FederatedData, spec: FederationSpec,
                   model_factory: Callable[[], nn.Module]) -> Hooks:
    """The registry's builder. Downlink noise is whatever the federation sets."""
    hook, _ = build_copy_adaptation("fed-safe", defense, data, spec, model_factory)
    return Hooks(server=hook)
