"""``client-adversarial-training``: Madry PGD adversarial training inside every client's local epochs (design §5).

Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks": each local mini-batch is
replaced by its L-inf PGD examples against the client's current parameters (true labels), and the client
minimises ``CE(f(x_adv), y)`` (:class:`fedsafe.defenses.adaptation.PgdLoss`). PGD is crafted in eval mode
(dropout off, the deterministic network), the loss in train mode, under local training's precision.
The random start comes from local training's own generator (keyed by seed, round, client).

Cost: ``steps + 1`` forward/backward passes per image instead of 1, on every client (the simulator counts
them in ``train_passes``); the server does nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import DefenseConfig
from ..federation.federated_data import FederatedData
from ..federation.federation_spec import FederationSpec
from ..federation.hooks import Hooks
from .adaptation import PgdLoss, pgd_loss

__all__ = ["build_client_adversarial_training", "madry_loss"]


def madry_loss(*, eps: float, alpha: float, steps: int, random_start: bool = True, precision: str = "fp32"
               ) -> PgdLoss:
    """The clients' training loss: a :data:`fedsafe.federation.client.LossFn` costing ``steps + 1`` passes/image."""
    return PgdLoss(eps=eps, alpha=alpha, steps=steps, random_start=random_start, precision=precision)


def build_client_adversarial_training(defense: DefenseConfig, data: FederatedData, spec: FederationSpec,
                                      model_factory: Callable[[], nn.Module]) -> Hooks:
    """The registry's builder: PGD of ``defense`` (alpha defaults to eps / 6) inside local training.
    ``defense.fraction``, ``epochs``, ``lr`` and ``batch_size`` do not apply (local training's are used)."""
    return Hooks(loss_fn=pgd_loss(defense, spec.local.precision))
