"""The pieces of one federated round (design §3), engine-independent.

The in-process simulator and the Flower strategy call exactly these functions, so the two engines
compute the same thing. Every random draw comes from a generator keyed by (seed, purpose, round, client):
adding a client changes no other client's noise, and any round can be replayed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..seeding import torch_generator
from .state import add_gaussian, clip_, clone, fedavg

__all__ = ["downlink_copy", "uplink", "aggregate"]


def downlink_copy(global_state: Mapping[str, torch.Tensor], *, std: float, seed: int, round_: int,
                  client: int) -> dict[str, torch.Tensor]:
    """Client ``client``'s own copy w_t + n_i, n_i ~ N(0, s_D^2 I), independent per client and round."""
    if std == 0:
        return clone(global_state)
    return add_gaussian(global_state, std, torch_generator(seed, "downlink", round_, client))


def uplink(state: Mapping[str, torch.Tensor], *, clip: float | None, std: float, seed: int, round_: int,
           client: int) -> dict[str, torch.Tensor]:
    """What client ``client`` sends: w / max(1, ||w|| / C), plus N(0, s_U^2 I) (both optional)."""
    out = clone(state)
    if clip is not None:
        clip_(out, clip)
    if std > 0:
        out = add_gaussian(out, std, torch_generator(seed, "uplink", round_, client))
    return out


def aggregate(states: Sequence[Mapping[str, torch.Tensor]], sizes: Sequence[int], *, weighted: bool = True
              ) -> dict[str, torch.Tensor]:
    """FedAvg: p_i = |D_i| / |D| when ``weighted``, else the plain mean."""
    return fedavg(states, list(map(float, sizes)) if weighted else None)
