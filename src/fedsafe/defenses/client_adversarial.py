"""``client-adversarial-training``: Madry PGD adversarial training inside every client's local epochs (SPEC 5).

Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks": each local mini-batch is
replaced by its L-inf PGD examples against the client's current parameters (true labels), and the client
minimises ``CE(f(x_adv), y)`` (:class:`fedsafe.defenses.adaptation.PgdLoss`). PGD is crafted in eval mode
(dropout off, the deterministic network), the loss in train mode, under local training's precision.
The random start comes from local training's own generator (keyed by seed, round, client).

Cost: ``steps + 1`` forward/backward passes per image instead of 1, on every client (the simulator counts
them in ``train_passes``); the server does nothing extra.
"""

from __future__ import annotations

from ..config import ExperimentConfig
from ..federation.data import FederatedData
from ..federation.hooks import Hooks
from ..federation.simulator import FederationSpec
from .adaptation import PgdLoss

__all__ = ["build_client_adversarial_training", "madry_loss"]


def madry_loss(*, eps: float, alpha: float, steps: int, random_start: bool = True, precision: str = "fp32"
               ) -> PgdLoss:
    """The clients' training loss: a :data:`fedsafe.federation.client.LossFn` costing ``steps + 1`` passes/image.

    >>> madry_loss(eps=0.03, alpha=0.005, steps=6).passes_per_image
    7
    """
    return PgdLoss(eps=eps, alpha=alpha, steps=steps, random_start=random_start, precision=precision)


def build_client_adversarial_training(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> Hooks:
    """The registry's builder: PGD of ``cfg.defense`` (alpha defaults to eps / 6) inside local training.
    ``defense.fraction``, ``epochs``, ``lr`` and ``batch_size`` do not apply (local training's are used)."""
    d = cfg.defense
    if d.eps <= 0:
        raise ValueError(f"defense.eps must be > 0 for 'client-adversarial-training', got {d.eps}")
    return Hooks(loss_fn=madry_loss(eps=d.eps, alpha=d.alpha if d.alpha is not None else d.eps / 6, steps=d.steps,
                                    random_start=d.random_start, precision=spec.local.precision))
