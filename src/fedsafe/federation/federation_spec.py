"""What a federation runs: local training (:class:`LocalSpec`) and the rounds around it (:class:`FederationSpec`).

Plain frozen values, engine-independent: the in-process simulator and the Flower apps read the same spec. They
are built from a validated :class:`fedsafe.config.ExperimentConfig` by the composition root
(:func:`fedsafe.build.federation_spec`); precision and device are already resolved here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..names import AGGREGATORS, NORM_ACTIONS

__all__ = ["DEFAULT_NORM_FACTOR", "FederationSpec", "LocalSpec"]

DEFAULT_NORM_FACTOR = 20.0
"""The norm screen's default: an upload whose update norm exceeds 20 x the round's (lower) median update norm is
rejected. No honest client comes near it: the largest ratio measured on honest synthetic runs was 1.93 (five
unequal clients of a Dirichlet-0.1 split; ``benchmarks/bench_screening.py``), a margin of 10x. It is also the
least factor by which a round's aggregate "explodes" (:func:`fedsafe.federation.protocol.server_aggregate`)."""


@dataclass(frozen=True, kw_only=True)
class LocalSpec:
    """How a client trains locally. ``precision`` is resolved ("fp32" or "bf16"), ``device`` a torch device
    string ("cpu", "cuda:0"). The recipe (epochs, batch size, optimiser, learning rate, gradient clip) has no
    default: it comes from the config (:func:`fedsafe.build.federation_spec`), whose defaults are the cpu profile's
    YAML."""

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float = 0.0
    grad_clip: float | None
    augment: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    device: str = "cpu"


@dataclass(frozen=True)
class FederationSpec:
    """The rounds of design §3.

    Aggregation: ``aggregator`` is FedAvg (weighted by data size unless ``weighted`` is False) or a robust rule
    (``median``, ``trimmed-mean`` with ``trim_fraction``, ``krum`` / ``multi-krum`` tolerating ``byzantine``
    clients and averaging ``multi_krum_m`` of them). Every upload is screened first: a non-finite one is always
    rejected; with ``norm_factor`` (default ``DEFAULT_NORM_FACTOR``; None: no norm screen) an update whose norm
    exceeds that many times the median is handled by ``norm_action`` (reject by default, flag, or clip to the
    bound).
    """

    rounds: int
    seed: int
    local: LocalSpec
    downlink_noise: float = 0.0
    uplink_clip: float | None = None
    uplink_noise: float = 0.0
    weighted: bool = True
    keep_received: int = 10
    eval_every: int = 1
    eval_batch_size: int = 256
    aggregator: str = "fedavg"
    trim_fraction: float = 0.1
    byzantine: int = 0
    multi_krum_m: int | None = None
    norm_factor: float | None = DEFAULT_NORM_FACTOR
    norm_action: str = "reject"

    def __post_init__(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"unknown aggregator {self.aggregator!r}; known: {', '.join(AGGREGATORS)}")
        if self.norm_action not in NORM_ACTIONS:
            raise ValueError(f"norm_action must be one of {', '.join(NORM_ACTIONS)}, got {self.norm_action!r}")

    def should_evaluate(self, round_: int) -> bool:
        """Whether round ``round_`` is evaluated: every ``eval_every`` rounds, and always the last one."""
        e = self.eval_every
        return round_ == self.rounds or (e > 0 and round_ % e == 0)

    def keeps_received(self, round_: int) -> bool:
        """Whether the copies received in ``round_`` are kept (the last ``keep_received`` rounds, for CRN)."""
        return round_ > self.rounds - self.keep_received
