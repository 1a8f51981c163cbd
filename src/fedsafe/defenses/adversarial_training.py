"""``adversarial-training``: the papers' baseline defense, as the authors' code did it (design §5).

For each client separately, the server takes the clean global model (no downlink noise), crafts PGD examples
against it from round(f * |D_i|) images of its server data set, fine-tunes that client's copy on them with that
client's own random draws (PGD start, batch order, dropout; streams keyed (seed, "adversarial-training", round,
client)) and sends it. The clients' models therefore differ a little, and ASR self can differ from ASR on benign
clients (paper Table 1: 0.12 self vs 0.05 avg). It is Fed-Safe with s_D = 0 (:mod:`fedsafe.defenses.fed_safe`).

``adversarial-training-shared`` is a named variant only: the global model is adapted once after aggregation and
every client receives that same model, so ASR self = ASR avg and AETR = 1 by construction; it never decides a
transfer verdict. It adapts on round(f * mean |D_i|) server images.

Cost: N adaptations per downlink (per-client form), one per round (shared variant).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..config import DefenseConfig
from ..federation.federated_data import FederatedData, Split
from ..federation.federation_spec import FederationSpec, LocalSpec
from ..federation.hooks import Hooks, HookStats
from ..federation.state import clone
from .adaptation import (
    PgdLoss,
    adaptation_counts,
    adaptation_local_spec,
    adversarial_finetune,
    check_server_disjoint,
    pgd_loss,
    server_subsets,
)
from .fed_safe import build_copy_adaptation

__all__ = ["SharedAdversarialTrainingHook", "build_adversarial_training", "build_adversarial_training_shared"]

StateDict = dict[str, torch.Tensor]


def _no_downlink_noise(name: str, spec: FederationSpec) -> None:
    if spec.downlink_noise > 0:
        raise ValueError(
            f"defense {name!r} adapts the clean global model, so it cannot be combined with downlink noise "
            f"(s_D = {spec.downlink_noise:g}, from federation.downlink_noise or privacy.calibrate); set "
            f"federation.downlink_noise to 0 and drop privacy.calibrate, or use defense 'fed-safe'")


def build_adversarial_training(defense: DefenseConfig, data: FederatedData, spec: FederationSpec,
                               model_factory: Callable[[], nn.Module]) -> Hooks:
    """The registry's builder: the per-client adaptation of the clean global model (Fed-Safe with s_D = 0)."""
    _no_downlink_noise("adversarial-training", spec)
    hook, _ = build_copy_adaptation("adversarial-training", defense, data, spec, model_factory)
    return Hooks(server=hook)


class SharedAdversarialTrainingHook:
    """Server hook of the shared variant: adapt the global model after aggregation; send it to everyone."""

    name = "adversarial-training-shared"

    def __init__(self, *, model: nn.Module, subset: Split, local: LocalSpec, loss: PgdLoss, seed: int) -> None:
        if len(subset) == 0:
            raise ValueError("adversarial-training-shared needs non-empty server data")
        self.model, self.subset, self.local, self.loss, self.seed = model, subset, local, loss, seed

    def after_aggregation(self, global_state: Mapping[str, torch.Tensor], *, round_: int
                          ) -> tuple[StateDict, HookStats]:
        return adversarial_finetune(self.model, global_state, self.subset.x, self.subset.y, local=self.local,
                                    loss=self.loss, seed=self.seed, round_=round_, client=0, purpose=self.name)

    def adapt_downlink(self, global_state: Mapping[str, torch.Tensor], copy: Mapping[str, torch.Tensor], *,
                       round_: int, client: int) -> tuple[StateDict, HookStats]:
        """Every client gets the (already adapted) global model itself; the copy is ignored."""
        return clone(global_state), {}


def build_adversarial_training_shared(defense: DefenseConfig, data: FederatedData, spec: FederationSpec,
                                      model_factory: Callable[[], nn.Module]) -> Hooks:
    """The registry's builder of the shared variant."""
    _no_downlink_noise("adversarial-training-shared", spec)
    sizes = [len(s) for s in data.client_train]
    if defense.adaptation_data != "server":
        raise ValueError("adversarial-training-shared adapts on the server set only (defense.adaptation_data=server)")
    (count,) = adaptation_counts(defense.fraction, [round(sum(sizes) / len(sizes))], len(data.server))
    (subset,) = server_subsets(data.server, [count], seed=spec.seed)
    check_server_disjoint(subset, data)
    hook = SharedAdversarialTrainingHook(model=model_factory(), subset=subset,
                                         local=adaptation_local_spec(defense, spec.local),
                                         loss=pgd_loss(defense, spec.local.precision), seed=spec.seed)
    return Hooks(server=hook)
