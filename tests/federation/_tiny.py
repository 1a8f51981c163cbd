"""A tiny federation for fast tests: random-but-learnable images, a very narrow PaperCNN."""

from __future__ import annotations

import torch

from fedsafe.data.types import DataReport
from fedsafe.federation.federated_data import FederatedData, Split
from fedsafe.federation.federation_spec import FederationSpec, LocalSpec
from fedsafe.models import PaperCNN


def tiny_split(n: int, seed: int, size: int = 16) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 1, size, size, generator=g) * 0.5
    x[y == 1, :, 4:10, 4:10] += 0.4  # a bright square makes class 1 learnable
    return Split(x=x.clamp(0, 1), y=y, ids=tuple(f"s{seed}:{i}" for i in range(n)))


def tiny_data(num_clients: int = 3, sizes: tuple[int, ...] | None = None) -> FederatedData:
    sizes = sizes or tuple(24 + 8 * i for i in range(num_clients))
    return FederatedData(
        task="tiny", class_names=("a", "b"), synthetic=True,
        client_train=tuple(tiny_split(sizes[i], 100 + i) for i in range(num_clients)),
        client_test=tuple(tiny_split(10, 200 + i) for i in range(num_clients)),
        server=tiny_split(12, 300), global_test=tiny_split(20, 400),
        report=DataReport(task="tiny", source="tests", synthetic=True),
    )


def tiny_model() -> PaperCNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PaperCNN(num_classes=2, in_channels=1, image_size=16, width=0.04)


TINY_HASH = "tiny-federation-test-hash"
"""The config hash the tests' run stores carry (the tiny federation has no ExperimentConfig)."""


def tiny_store(root):
    from fedsafe.runs import open_run

    return open_run(root, config_hash=TINY_HASH).store


def tiny_spec(rounds: int = 3, **kw: object) -> FederationSpec:
    local = LocalSpec(epochs=1, batch_size=8, optimizer="adam", lr=1e-3, grad_clip=20.0, augment=False,
                      precision="fp32")
    base = dict(rounds=rounds, seed=7, local=local, downlink_noise=0.01, uplink_clip=50.0, uplink_noise=0.001,
                keep_received=2)
    base.update(kw)
    return FederationSpec(**base)  # type: ignore[arg-type]
