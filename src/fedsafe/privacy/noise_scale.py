"""How large a run's privacy noise is beside the model it is added to (design §4): the utility side of epsilon.

The accountant says what the noise protects; this says what it leaves of the model. Each client adds N(0, s_U^2 I)
to its clipped upload, an entry each of the model's d floating-point entries; FedAvg's weighted average carries
sum_k p_k n_k, whose L2 norm is (as the square root of its expected square) s_U sqrt(d) sqrt(sum_k p_k^2); the
downlink adds N(0, s_D^2 I) to each client's copy, norm s_D sqrt(d). A client therefore starts every round from the
average plus noise of norm sqrt(s_U^2 sum_k p_k^2 + s_D^2) sqrt(d).

With uplink clipping every upload, and so the average, has norm at most C: when the noise a client receives is at
least C, it is at least as large as any model the federation can send, and the model a client starts from is mostly
noise (Fed-Safe Table 2's epsilon <= 10 arm: 8.7 x C, and not one of its 20 trainings learned). Without clipping
there is no such bound, and only the norms are reported.

Example (the cpu profile's CNN, 3 clients of about 191 images, noise for epsilon <= 10 at C = 59):
    >>> s = noise_scale(std_uplink=1.47, std_downlink=0.01, entries=367_936, weights=[192, 191, 191], clip=59.0)
    >>> round(s.averaged_uplink_norm), round(s.received_norm), round(s.received_to_clip, 1)
    (515, 515, 8.7)
    >>> s.warning() is not None
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["NoiseScale", "noise_scale"]


@dataclass(frozen=True)
class NoiseScale:
    """The L2 norms of a run's noise (module docstring) and, with clipping, the received noise over C."""

    entries: int
    std_uplink: float
    std_downlink: float
    clip: float | None
    averaged_uplink_norm: float
    downlink_norm: float
    received_norm: float
    received_to_clip: float | None

    def warning(self) -> str | None:
        """One line when the noise a client receives is at least C (None otherwise, and without clipping)."""
        if self.received_to_clip is None or self.received_to_clip < 1:
            return None
        return (f"the noise a client receives each round has L2 norm {self.received_norm:.3g}, "
                f"{self.received_to_clip:.3g} times the clip C = {self.clip:g}, the largest norm an averaged clipped "
                f"model can have: the model every client starts from is mostly noise, and the federation is unlikely "
                f"to learn (a larger epsilon, many more clients or a model with fewer than {self.entries} entries "
                f"shrink it)")

    def to_dict(self) -> dict[str, Any]:
        """The numbers and the warning (None when there is none), as a privacy report records them."""
        return {**asdict(self), "warning": self.warning()}


def noise_scale(*, std_uplink: float, std_downlink: float, entries: int, weights: Sequence[float],
                clip: float | None) -> NoiseScale:
    """The noise norms of a run: ``entries`` the model's floating-point entries (every one is noised), ``weights``
    the clients' FedAvg weights (normalised here), ``clip`` the uplink C (None: no clipping)."""
    if std_uplink < 0 or std_downlink < 0:
        raise ValueError(f"noise stds must be >= 0, got s_U {std_uplink}, s_D {std_downlink}")
    if entries < 1:
        raise ValueError(f"a model has at least one noised entry, got {entries}")
    if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"client weights must be >= 0 with a positive sum, got {list(weights)}")
    if clip is not None and clip <= 0:
        raise ValueError(f"clip C must be > 0, got {clip}")
    total = float(sum(weights))
    share = math.sqrt(sum((w / total) ** 2 for w in weights))
    root = math.sqrt(entries)
    averaged, downlink = std_uplink * root * share, std_downlink * root
    received = math.hypot(averaged, downlink)
    return NoiseScale(entries=entries, std_uplink=std_uplink, std_downlink=std_downlink, clip=clip,
                      averaged_uplink_norm=averaged, downlink_norm=downlink, received_norm=received,
                      received_to_clip=None if clip is None else received / clip)
