"""Local training of one client (design §3, step 2) and batched evaluation.

Engine-independent: the in-process simulator and the Flower ClientApp both call ``local_train``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.inference import predict, train_mode
from ..names import OPTIMIZERS
from ..precision import autocast
from ..seeding import seed_for, torch_generator
from .federation_spec import LocalSpec
from .state import clone

__all__ = ["LocalStats", "LossFn", "cross_entropy_loss", "local_train", "accuracy", "make_optimizer"]

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, int]]
"""(model, x, y, generator) -> (loss, forward/backward passes per image spent on this batch)."""


@dataclass(frozen=True)
class LocalStats:
    loss: float
    images: int
    passes: int  # forward/backward passes over images (1 per image per epoch for plain training)
    seconds: float


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
                       ) -> tuple[torch.Tensor, int]:
    """Plain training: CE(f(x), y), one forward/backward pass per image."""
    return F.cross_entropy(model(x), y), 1


def make_optimizer(name: str, params: Iterator[nn.Parameter], *, lr: float, momentum: float = 0.0
                   ) -> torch.optim.Optimizer:
    """A fresh optimiser by name (``sgd`` or ``adam``), as local training and server fine-tuning use it.

    Multi-tensor (``foreach``) updates on every device: one kernel call a step for all parameters instead of one a
    parameter (torch's own default on CUDA; on the CPU it defaults to the per-tensor loop). The arithmetic is the
    same, so the weights are bit-identical to the per-tensor loop's (tests/federation/test_client_step.py); the
    ``fused`` kernels are not (another order of operations), so they are not used."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def local_train(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    spec: LocalSpec,
    *,
    seed: int,
    round_: int,
    client: int,
    loss_fn: LossFn = cross_entropy_loss,
    augment_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    purpose: str = "local-train",
) -> tuple[dict[str, torch.Tensor], LocalStats]:
    """E epochs of mini-batch training from ``state`` on (x, y); returns the new state and statistics.

    x: (N, C, H, W) float in [0, 1]; y: (N,) int64, on the model's device. The model's own parameters are
    overwritten with ``state`` first. Shuffling, augmentation and the loss's own draws (a PGD start) come from one
    CPU generator keyed (seed, ``purpose``, round, client); dropout uses torch's default generator inside a forked
    RNG scope keyed the same way (``dropout`` for local training, ``<purpose>-dropout`` otherwise), so the caller's
    global RNG is left exactly as it was and the result is reproducible. ``purpose`` names the streams of another
    use of this loop (the server's adversarial adaptation, :mod:`fedsafe.defenses.adaptation`).
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"client {client}: training data must be non-empty with one label per image")
    t0 = time.perf_counter()
    model.load_state_dict(state)
    gen = torch_generator(seed, purpose, round_, client)
    dropout = "dropout" if purpose == "local-train" else f"{purpose}-dropout"
    opt = make_optimizer(spec.optimizer, model.parameters(), lr=spec.lr, momentum=spec.momentum)
    n, batches, passes = len(x), 0, 0
    total_loss = torch.zeros((), dtype=torch.float64, device=x.device)  # summed on the device: no sync a step
    with _forked_rng(x.device), train_mode(model):
        torch.manual_seed(seed_for(seed, dropout, round_, client))
        for _ in range(spec.epochs):
            order = _to_device(torch.randperm(n, generator=gen), x.device)
            for start in range(0, n, spec.batch_size):
                idx = order[start:start + spec.batch_size]
                xb, yb = x[idx], y[idx]
                if spec.augment and augment_fn is not None:
                    xb = augment_fn(xb, gen)
                if spec.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                opt.zero_grad(set_to_none=True)
                with autocast(spec.precision, x.device.type):
                    loss, k = loss_fn(model, xb, yb, gen)
                loss.backward()
                if spec.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
                opt.step()
                total_loss.add_(loss.detach())
                batches += 1
                passes += k * len(idx)
    stats = LocalStats(loss=float(total_loss) / max(batches, 1), images=n * spec.epochs, passes=passes,
                       seconds=time.perf_counter() - t0)
    return clone(model.state_dict()), stats


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device``; to a GPU from pinned memory without blocking the host (no sync an epoch)."""
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def _forked_rng(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Fork torch's default generators (CPU, and the CUDA device in use) so dropout seeding leaves them as found."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw: object) -> float:
    if len(y) == 0:
        return float("nan")
    return float((predict(model, x, **kw) == y).double().mean())
