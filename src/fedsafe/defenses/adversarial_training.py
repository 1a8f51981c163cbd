"""``adversarial-training``: the papers' baseline defence (SPEC section 5).

After every aggregation the server crafts PGD examples against the one global model from a fraction f of its
server data set and fine-tunes the global model on them (:func:`fedsafe.defenses.adaptation.adversarial_finetune`).
Every client receives that same adapted model: there is no downlink noise, so the builder rejects a run whose
downlink noise (set by hand or calibrated) is above zero.

Cost: one adaptation per round, ``(steps + 1) * round(f * |server|) * epochs`` forward/backward passes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..config import ExperimentConfig
from ..federation.data import FederatedData
from ..federation.hooks import Hooks, HookStats
from ..federation.simulator import FederationSpec
from ..federation.state import clone
from .adaptation import AdaptationSpec, check_server_data, finetune_with, server_hook_inputs

__all__ = ["AdversarialTrainingHook", "build_adversarial_training"]

StateDict = dict[str, torch.Tensor]


class AdversarialTrainingHook:
    """Server hook: adversarially fine-tune the global model after aggregation; send it unchanged to everyone.

    Args:
        model: the server's own model instance (its parameters are overwritten on every call).
        x, y: the server's adaptation images (N, C, H, W) in [0, 1] and true labels (N,).
        adaptation: PGD and fine-tuning settings.
        seed: root seed; round r's adaptation draws from streams keyed (seed, "adversarial-training-*", r, 0).
    """

    name = "adversarial-training"

    def __init__(self, *, model: nn.Module, x: torch.Tensor, y: torch.Tensor, adaptation: AdaptationSpec,
                 seed: int) -> None:
        check_server_data(x, y, defence="adversarial training")
        self.model, self.x, self.y, self.adaptation, self.seed = model, x, y, adaptation, seed

    def after_aggregation(self, global_state: Mapping[str, torch.Tensor], *, round_: int
                          ) -> tuple[StateDict, HookStats]:
        return finetune_with(self.adaptation, self.model, global_state, self.x, self.y, seed=self.seed,
                             round_=round_, client=0, purpose=self.name)

    def adapt_downlink(self, global_state: Mapping[str, torch.Tensor], copy: Mapping[str, torch.Tensor], *,
                       round_: int, client: int) -> tuple[StateDict, HookStats]:
        """Every client gets the (already adapted) global model itself; the copy is ignored."""
        return clone(global_state), {}


def build_adversarial_training(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> Hooks:
    """The registry's builder: the fraction ``cfg.defense.fraction`` of ``data.server``, the run's model."""
    if spec.downlink_noise > 0:
        raise ValueError(
            f"defense 'adversarial-training' sends every client the same model, so it cannot be combined with "
            f"downlink noise (s_D = {spec.downlink_noise:g}, from federation.downlink_noise or privacy.calibrate); "
            f"set federation.downlink_noise to 0 and drop privacy.calibrate, or use defense 'fed-safe'")
    hook = AdversarialTrainingHook(**server_hook_inputs(cfg, data, spec))  # type: ignore[arg-type]
    return Hooks(server=hook)
