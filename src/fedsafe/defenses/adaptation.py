"""Adversarial adaptation: fine-tune a model on PGD examples crafted against that same model (SPEC section 5).

The one piece both server defences use. For every mini-batch of the server's data (x, y), PGD examples are
crafted against the *current* parameters with the true server labels, then one optimiser step is taken on

    CE(f_w(x_adv), y),    x_adv = PGD_{eps, alpha, steps}(f_w, x, y)            (Madry et al. 2018, eq. 2.1)

i.e. the inner maximisation / outer minimisation of the adversarial loss (Fed-Safe, eq. 5 and 9), over
``epochs`` passes of the data. The loss is on the adversarial examples only, as SPEC section 5 states ("fine-tunes
the model on them"). The Fed-Safe text speaks of "optimizing of an augmented dataset", which could also be read as
clean plus adversarial examples; its equations were lost in extraction, and SPEC.md (filled from the authors'
code) holds where the two differ.

PGD is crafted in eval mode (dropout off: the examples target the deterministic network that attackers later
face; :func:`fedsafe.attacks.pgd` restores the mode), the training step runs in train mode (dropout on).

Cost: every image costs ``steps`` forward/backward passes to craft and one to train on, ``steps + 1`` in all.

Randomness: the batch order, PGD random starts and dropout each come from their own stream keyed by
(seed, purpose, round, client); the caller's global RNG is left as it was.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.iterative import pgd
from ..config import ExperimentConfig
from ..data.splits import server_fraction
from ..federation.client import make_optimizer, train_mode
from ..federation.data import FederatedData, Split
from ..federation.hooks import HookStats
from ..federation.simulator import FederationSpec
from ..federation.state import clone
from ..precision import autocast
from ..seeding import numpy_rng, seed_for, torch_generator

__all__ = [
    "AdaptationSpec",
    "PgdLoss",
    "adaptation_spec",
    "adversarial_finetune",
    "check_server_disjoint",
    "finetune_with",
    "server_model",
    "server_subset",
]


@dataclass(frozen=True)
class PgdLoss:
    """Madry et al. 2018 ("Towards deep learning models resistant to adversarial attacks") training loss:
    ``CE(f(x_adv), y)`` with ``x_adv`` L-inf PGD against the model's current parameters and the true labels ``y``.

    A :data:`fedsafe.federation.client.LossFn`: ``(model, x, y, generator) -> (loss, passes per image)``; the
    random start (when ``random_start``) is drawn from ``generator``. Passes per image: ``steps + 1``.

    >>> from fedsafe.models.cnn import PaperCNN
    >>> m = PaperCNN(num_classes=2, in_channels=1, image_size=16, width=0.05)
    >>> loss, k = PgdLoss(eps=0.03, alpha=0.005, steps=6)(m, torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 0, 1]),
    ...                                                   torch.Generator().manual_seed(0))
    >>> k
    7
    """

    eps: float
    alpha: float
    steps: int
    random_start: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1:
            raise ValueError(f"adversarial training needs an L-inf budget eps in (0, 1], got {self.eps}")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"the PGD step alpha must be in (0, 1], got {self.alpha}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"PGD steps must be an integer >= 1, got {self.steps!r}")

    @property
    def passes_per_image(self) -> int:
        return self.steps + 1

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, int]:
        start = None if self.random_start else torch.zeros_like(x)
        adv = pgd(model, x, y, eps=self.eps, alpha=self.alpha, steps=self.steps, start=start,
                  generator=generator if self.random_start else None, precision=self.precision)
        return F.cross_entropy(model(adv.x_adv), y), self.passes_per_image


@dataclass(frozen=True)
class AdaptationSpec:
    """How a server adapts a model (the adversarial attack it trains against, and the fine-tuning).

    Authors' values: PGD eps 0.03, alpha eps/6, 6 steps, random start, 1 epoch. ``precision`` is resolved
    ("fp32" or "bf16").
    """

    eps: float = 0.03
    alpha: float = 0.005
    steps: int = 6
    random_start: bool = True
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 32
    optimizer: str = "adam"
    momentum: float = 0.0
    grad_clip: float | None = None
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        self.loss()  # validates eps, alpha, steps
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"adaptation needs epochs >= 1 and batch_size >= 1, got {self.epochs}, "
                             f"{self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"adaptation learning rate must be > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: sgd, adam")

    def loss(self) -> PgdLoss:
        return PgdLoss(eps=self.eps, alpha=self.alpha, steps=self.steps, random_start=self.random_start,
                       precision=self.precision)


def adaptation_spec(cfg: ExperimentConfig, spec: FederationSpec) -> AdaptationSpec:
    """The adaptation of ``cfg.defense``: alpha defaults to eps / 6 and lr to the local lr; the optimiser,
    momentum, gradient clipping, precision and memory format are those of local training."""
    d, local = cfg.defense, spec.local
    if d.eps <= 0:
        raise ValueError(f"defense.eps must be > 0 for the {d.name!r} defence (it trains against an eps-ball), "
                         f"got {d.eps}")
    return AdaptationSpec(eps=d.eps, alpha=d.alpha if d.alpha is not None else d.eps / 6, steps=d.steps,
                          random_start=d.random_start, epochs=d.epochs, lr=d.lr if d.lr is not None else local.lr,
                          batch_size=d.batch_size, optimizer=local.optimizer, momentum=local.momentum,
                          grad_clip=local.grad_clip, precision=local.precision, channels_last=local.channels_last)


def adversarial_finetune(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
    epochs: int,
    lr: float,
    batch_size: int,
    optimizer: str,
    precision: str,
    channels_last: bool,
    seed: int,
    round_: int,
    client: int,
    momentum: float = 0.0,
    grad_clip: float | None = None,
    purpose: str = "adaptation",
) -> tuple[dict[str, torch.Tensor], HookStats]:
    """Fine-tune ``state`` for ``epochs`` on PGD examples of (x, y) crafted against the current model (module
    docstring); returns the new state and its cost.

    Shapes: x (N, C, H, W) float in [0, 1]; y (N,) int64 true labels. The model's parameters are overwritten
    with ``state`` first; ``state`` itself is not modified (unless it is ``model.state_dict()`` itself, whose
    tensors are the parameters being trained: pass a clone). A fresh optimiser is made for every call (the server
    keeps no optimiser state across rounds or clients). Streams are keyed by (seed, purpose, round_, client).

    Returns:
        (new state, stats) with stats ``server_passes`` (forward/backward passes over images, ``(steps + 1) * N *
        epochs``), ``server_images`` (``N * epochs``), ``server_adaptations`` (1) and ``server_seconds``.

    >>> from fedsafe.models.cnn import PaperCNN
    >>> m = PaperCNN(num_classes=2, in_channels=1, image_size=16, width=0.05)
    >>> new, st = adversarial_finetune(m, clone(m.state_dict()), torch.rand(6, 1, 16, 16), torch.tensor([0, 1] * 3),
    ...     eps=0.03, alpha=0.005, steps=2, random_start=True, epochs=1, lr=1e-3, batch_size=4, optimizer="adam",
    ...     precision="fp32", channels_last=False, seed=0, round_=1, client=0)
    >>> st["server_passes"]
    18.0
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("adaptation data must be non-empty with one label per image")
    loss_fn = PgdLoss(eps=eps, alpha=alpha, steps=steps, random_start=random_start, precision=precision)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"adaptation needs epochs >= 1 and batch_size >= 1, got {epochs}, {batch_size}")
    t0 = time.perf_counter()
    model.load_state_dict(state)
    order_gen = torch_generator(seed, f"{purpose}-order", round_, client)
    start_gen = torch_generator(seed, f"{purpose}-pgd-start", round_, client)
    opt = make_optimizer(optimizer, model.parameters(), lr=lr, momentum=momentum)
    n, passes = len(x), 0
    with torch.random.fork_rng(devices=[]), train_mode(model):
        torch.manual_seed(seed_for(seed, f"{purpose}-dropout", round_, client))
        for _ in range(epochs):
            order = torch.randperm(n, generator=order_gen)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                xb, yb = x[idx], y[idx]
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                opt.zero_grad(set_to_none=True)
                with autocast(precision):
                    loss, k = loss_fn(model, xb, yb, start_gen)
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                opt.step()
                passes += k * len(idx)
    stats = {"server_passes": float(passes), "server_images": float(n * epochs), "server_adaptations": 1.0,
             "server_seconds": time.perf_counter() - t0}
    return clone(model.state_dict()), stats


def finetune_with(spec: AdaptationSpec, model: nn.Module, state: Mapping[str, torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor, *, seed: int, round_: int, client: int, purpose: str
                  ) -> tuple[dict[str, torch.Tensor], HookStats]:
    """:func:`adversarial_finetune` with the settings of ``spec``."""
    return adversarial_finetune(model, state, x, y, **asdict(spec), seed=seed, round_=round_, client=client,
                                purpose=purpose)


def server_subset(server: Split, fraction: float, *, seed: int) -> Split:
    """The fraction f of the server set the defence adapts on: exactly ``round(f * len(server))`` images,
    stratified by class and nested across f (:func:`fedsafe.data.splits.server_fraction`), drawn from the stream
    (seed, "server-fraction"). The same images are used in every round and for every client."""
    if len(server) == 0:
        raise ValueError("the defence needs a server data set, but it is empty (splits.server_size)")
    positions = server_fraction(np.arange(len(server)), fraction, numpy_rng(seed, "server-fraction"),
                                labels=server.y.numpy())
    if len(positions) == 0:
        raise ValueError(f"defense.fraction {fraction} selects round({fraction} * {len(server)}) = 0 server images; "
                         f"raise it or the server set's size")
    idx = torch.from_numpy(positions)
    return Split(x=server.x[idx], y=server.y[idx], ids=tuple(server.ids[int(i)] for i in positions))


def check_server_disjoint(subset: Split, data: FederatedData) -> None:
    """Raise ValueError if any image id of ``subset`` is also in a client's training or attack/test set or in the
    global test set (SPEC section 5: the authors drew their server data from the test split; we must not)."""
    ids = set(subset.ids)
    sets = {f"client {i} train": s for i, s in enumerate(data.client_train)}
    sets |= {f"client {i} test": s for i, s in enumerate(data.client_test)}
    sets["global test"] = data.global_test
    for where, split in sets.items():
        shared = ids.intersection(split.ids)
        if shared:
            raise ValueError(f"the defence's server data shares {len(shared)} image(s) with the {where} set "
                             f"(e.g. {sorted(shared)[0]!r}); the server set must be disjoint from client data")


def server_model(cfg: ExperimentConfig, data: FederatedData) -> nn.Module:
    """The server's own instance of the run's model (the simulator keeps its own), in the training memory format."""
    from ..experiments.train import model_factory  # local: experiments imports the registry lazily

    return model_factory(cfg, len(data.class_names), data.in_channels, layout=True)()


def server_hook_inputs(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> dict[str, object]:
    """What both server defences are built from: the fraction ``cfg.defense.fraction`` of ``data.server``
    (checked disjoint from every client's and the global test data), the run's model, the adaptation settings."""
    subset = server_subset(data.server, cfg.defense.fraction, seed=cfg.seed)
    check_server_disjoint(subset, data)
    return {"model": server_model(cfg, data), "x": subset.x, "y": subset.y,
            "adaptation": adaptation_spec(cfg, spec), "seed": cfg.seed}


def check_server_data(x: torch.Tensor, y: torch.Tensor, *, defence: str) -> None:
    """A server defence needs non-empty adaptation data with one label per image."""
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"{defence} needs non-empty server data with one label per image")

