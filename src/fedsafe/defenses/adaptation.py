"""Adversarial adaptation: fine-tune a model on PGD examples crafted against that same model (design §5).

The one piece every server defense uses. For every mini-batch of the adaptation data (x, y), PGD examples are
crafted against the *current* parameters with the true labels, then one optimiser step is taken on

    CE(f_w(x_adv), y),    x_adv = PGD_{eps, alpha, steps}(f_w, x, y)            (Madry et al. 2018, eq. 2.1)

i.e. the inner maximisation / outer minimisation of the adversarial loss (Fed-Safe, eq. 5 and 9), over
``epochs`` passes of the data: local training (:func:`fedsafe.federation.client.local_train`) with the loss
:class:`PgdLoss`. The loss is on the adversarial examples only, as design §5 states ("fine-tunes the model on
them"). PGD is crafted in eval mode (dropout off: the examples target the deterministic network that attackers
later face), the training step runs in train mode (dropout on).

Cost: every image costs ``steps`` forward/backward passes to craft and one to train on, ``steps + 1`` in all.

How much data (design §5): the fraction f is relative to the client's training data: client i's copy is adapted on
``round(f * |D_i|)`` server images (:func:`adaptation_counts`), the first ones of one stratified random order of
the server set (so smaller f and smaller clients take subsets of larger ones). Where the server set holds fewer
images than asked, all of it is used and the real count is reported, never a fraction of a smaller set.

Randomness: the batch order and PGD random starts share the stream keyed (seed, purpose, round, client), dropout
its own (seed, "<purpose>-dropout", round, client); the caller's global RNG is left as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.budget import check_alpha, check_eps, check_steps
from ..attacks.iterative import pgd
from ..config import DefenseConfig
from ..data.stratify import server_fraction
from ..defaults import defense_alpha
from ..federation.client import local_train
from ..federation.federated_data import FederatedData, Split
from ..federation.federation_spec import LocalSpec
from ..federation.hooks import HookStats
from ..seeding import numpy_rng

__all__ = [
    "AdaptationPlan",
    "PgdLoss",
    "adaptation_local_spec",
    "adaptation_counts",
    "adaptation_plan",
    "adversarial_finetune",
    "fraction_label",
    "check_server_disjoint",
    "pgd_loss",
    "server_subsets",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PgdLoss:
    """Madry et al. 2018 ("Towards deep learning models resistant to adversarial attacks") training loss:
    ``CE(f(x_adv), y)`` with ``x_adv`` L-inf PGD against the model's current parameters and the true labels ``y``.

    A :data:`fedsafe.federation.client.LossFn`: ``(model, x, y, generator) -> (loss, passes per image)``; the
    random start (when ``random_start``) is drawn from ``generator``. Passes per image: ``steps + 1``.
    """

    eps: float
    alpha: float
    steps: int
    random_start: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.eps == 0:
            raise ValueError("adversarial training needs an L-inf budget eps in (0, 1], got 0")
        check_eps(self.eps)
        check_alpha(self.alpha, who="the PGD step")
        check_steps(self.steps, what="PGD steps")

    @property
    def passes_per_image(self) -> int:
        return self.steps + 1

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, int]:
        start = None if self.random_start else torch.zeros_like(x)
        adv = pgd(model, x, y, eps=self.eps, alpha=self.alpha, steps=self.steps, start=start,
                  generator=generator if self.random_start else None, precision=self.precision)
        return F.cross_entropy(model(adv.x_adv), y), self.passes_per_image


def pgd_loss(defense: DefenseConfig, precision: str) -> PgdLoss:
    """The PGD of ``defense`` (alpha defaults to eps / 6, the authors') as a training loss."""
    if defense.eps <= 0:
        raise ValueError(f"defense.eps must be > 0 for the {defense.name!r} defense (it trains against an eps-ball),"
                         f" got {defense.eps}")
    alpha = defense_alpha(defense)
    return PgdLoss(eps=defense.eps, alpha=alpha, steps=defense.steps, random_start=defense.random_start,
                   precision=precision)


def adaptation_local_spec(defense: DefenseConfig, local: LocalSpec) -> LocalSpec:
    """How the server fine-tunes: ``defense``'s epochs, batch size and lr (default: the local lr), local training's
    optimiser, momentum, gradient clipping, precision, memory format and device; no augmentation."""
    return replace(local, epochs=defense.epochs, batch_size=defense.batch_size,
                   lr=defense.lr if defense.lr is not None else local.lr, augment=False)


def adversarial_finetune(model: nn.Module, state: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                         local: LocalSpec, loss: PgdLoss, seed: int, round_: int, client: int, purpose: str
                         ) -> tuple[dict[str, torch.Tensor], HookStats]:
    """Fine-tune ``state`` on PGD examples of (x, y) crafted against the current model (module docstring); returns
    the new state and its cost: ``server_passes`` ((steps + 1) * N * epochs), ``server_images`` (N * epochs),
    ``server_adaptations`` (1), ``server_seconds``. A fresh optimiser each call; ``state`` is not modified."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("adaptation data must be non-empty with one label per image")
    t0 = time.perf_counter()
    new, st = local_train(model, state, x, y, local, seed=seed, round_=round_, client=client, loss_fn=loss,
                          purpose=purpose)
    return new, {"server_passes": float(st.passes), "server_images": float(st.images), "server_adaptations": 1.0,
                 "server_seconds": time.perf_counter() - t0}


# -- how much data, and which -------------------------------------------------------------------------------------


def adaptation_counts(fraction: float, client_sizes: Sequence[int], available: int) -> list[int]:
    """Images each client's copy is adapted on: ``round(f * |D_i|)`` (at least 1), capped at ``available``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"defense.fraction must be in (0, 1], got {fraction}")
    if available <= 0:
        raise ValueError("the defense needs adaptation data, but the server set is empty (splits.server_size)")
    return [min(available, max(1, round(fraction * n))) for n in client_sizes]


def server_subsets(server: Split, counts: Sequence[int], *, seed: int) -> list[Split]:
    """Client i's adaptation images: the first ``counts[i]`` of one stratified random order of ``server`` (drawn from
    the stream (seed, "server-fraction"), :func:`fedsafe.data.splits.server_fraction`), so smaller counts are
    subsets of larger ones. The same images every round."""
    n, out = len(server), []
    for k in counts:
        if not 1 <= k <= n:
            raise ValueError(f"cannot take {k} adaptation images from a server set of {n}")
        pos = server_fraction(np.arange(n), k / n, numpy_rng(seed, "server-fraction"), labels=server.y.cpu().numpy())
        idx = torch.from_numpy(pos).to(server.x.device)
        out.append(Split(x=server.x[idx], y=server.y[idx], ids=tuple(server.ids[int(i)] for i in pos)))
    return out


def check_server_disjoint(subset: Split, data: FederatedData) -> None:
    """Raise ValueError if any image id of ``subset`` is also in a client's training or attack/test set or in the
    global test set (design §5: the authors drew their server data from the test split; we must not)."""
    ids = set(subset.ids)
    sets = {f"client {i} train": s for i, s in enumerate(data.client_train)}
    sets |= {f"client {i} test": s for i, s in enumerate(data.client_test)}
    sets["global test"] = data.global_test
    for where, split in sets.items():
        shared = ids.intersection(split.ids)
        if shared:
            raise ValueError(f"the defense's server data shares {len(shared)} image(s) with the {where} set "
                             f"(e.g. {sorted(shared)[0]!r}); the server set must be disjoint from client data")


@dataclass(frozen=True)
class AdaptationPlan:
    """What a server defense adapts each client's copy on: one Split per client, their sizes against the client's
    training size, where they come from, and notes (a count the server set could not meet, a leaky variant)."""

    subsets: tuple[Split, ...]
    source: str  # "server" or "attack-sets"
    notes: tuple[str, ...]

    @property
    def counts(self) -> list[int]:
        return [len(s) for s in self.subsets]

    def report(self, client_sizes: Sequence[int]) -> dict[str, object]:
        return {"source": self.source, "images": self.counts,
                "percent_of_client_train": [round(100 * k / n, 1) for k, n in zip(self.counts, client_sizes,
                                                                                   strict=True)],
                "notes": list(self.notes)}


def adaptation_plan(defense: DefenseConfig, data: FederatedData, *, seed: int) -> AdaptationPlan:
    """The adaptation data of ``defense`` for every client (module docstring).

    ``adaptation_data="server"``: round(f * |D_i|) images of the server set, checked disjoint from all client and
    test data. ``"attack-sets"`` (the labelled leaky variant, what the authors' code amounted to: it adapted on the
    very batch it then attacked): every client's copy is adapted on all clients' attack sets, with true labels.
    """
    sizes = [len(s) for s in data.client_train]
    if defense.adaptation_data == "attack-sets":
        x = torch.cat([s.x for s in data.client_test])
        y = torch.cat([s.y for s in data.client_test])
        ids = tuple(i for s in data.client_test for i in s.ids)
        leak = Split(x=x, y=y, ids=ids)
        note = (f"LEAKY VARIANT: the server adapts on the {len(leak)} images of the clients' attack sets themselves "
                "(the authors' protocol), not on its own server set")
        log.warning(note)
        return AdaptationPlan(subsets=tuple(leak for _ in sizes), source="attack-sets", notes=(note,))
    counts = adaptation_counts(defense.fraction, sizes, len(data.server))
    notes = []
    wanted = [max(1, round(defense.fraction * n)) for n in sizes]
    if any(k < w for k, w in zip(counts, wanted, strict=True)):
        notes.append(f"f = {defense.fraction:g} asks {max(wanted)} images for the largest client, but the server set "
                     f"holds {len(data.server)}: the copies are adapted on {counts} images "
                     f"({', '.join(f'{100 * k / n:.0f}%' for k, n in zip(counts, sizes, strict=True))} of |D_i|)")
        log.warning(notes[-1])
    subsets = server_subsets(data.server, counts, seed=seed)
    check_server_disjoint(subsets[int(np.argmax(counts))], data)
    return AdaptationPlan(subsets=tuple(subsets), source="server", notes=tuple(notes))


def fraction_label(fraction: float, counts: Sequence[int], client_sizes: Sequence[int]) -> str:
    """``"f 0.2: 46 images (20% of |D_i|)"``, or the real share when the server set could not meet f."""
    pct = [100 * k / n for k, n in zip(counts, client_sizes, strict=True)]
    lo, hi = min(counts), max(counts)
    count = f"{lo}" if lo == hi else f"{lo}-{hi}"
    lo_pct, hi_pct = f"{min(pct):.0f}", f"{max(pct):.0f}"
    share = f"{lo_pct}%" if lo_pct == hi_pct else f"{lo_pct}-{hi_pct}%"  # "50%", never "50-50%"
    return f"f {fraction:g}: {count} images ({share} of |D_i|)"
