"""What a defense cost a run, summed from the simulator's metrics rows (for the run's privacy report).

The simulator adds every server hook's stats to its round's row as ``defense_<key>`` (summed over the calls of
that round, the final downlink T + 1 included); local training records ``train_passes`` (forward/backward passes
over images, summed over clients) and ``train_seconds``. Client adversarial training's extra passes are not a
separate key: with PGD of k steps every client image costs k + 1 passes instead of 1, so k / (k + 1) of the
clients' passes are the defense's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..config import DefenseConfig
from ..defaults import defense_alpha
from ..names import CLIENT_DEFENSES, SERVER_DEFENSES

__all__ = ["defense_cost_summary"]

_SERVER_KEYS = ("passes", "images", "adaptations", "seconds")


def defense_cost_summary(metrics: Iterable[Mapping[str, object]], *, defense: DefenseConfig | None = None
                         ) -> dict[str, object]:
    """Totals over a run's metrics rows.

    Returns ``{"server": {passes, images, adaptations, seconds}, "clients": {passes, seconds, extra_passes},
    "wall_seconds"}`` where ``server.*`` sums the ``defense_server_*`` entries (0 when the defense has no server
    side), ``clients.passes``/``seconds`` sum ``train_passes``/``train_seconds``, ``clients.extra_passes`` is the
    share of those passes spent on client adversarial training (needs ``defense``; ``None`` without it) and
    ``wall_seconds`` sums ``round_seconds`` (training rounds; the final downlink's adaptation is in
    ``server.seconds``). With ``defense`` the summary also names it and its PGD (and, for server defenses, fraction
    and epochs) settings.

    >>> rows = [{"round": 1, "defense_server_passes": 70.0, "defense_server_seconds": 0.5, "train_passes": 100,
    ...          "train_seconds": 1.0, "round_seconds": 2.0}, {"round": 2, "final": True,
    ...          "defense_server_passes": 70.0, "defense_server_seconds": 0.5}]
    >>> s = defense_cost_summary(rows)
    >>> s["server"]["passes"], s["clients"]["passes"], s["wall_seconds"]
    (140.0, 100.0, 2.0)
    """
    server = dict.fromkeys(_SERVER_KEYS, 0.0)
    client_passes = client_seconds = wall = 0.0
    for row in metrics:
        for k in _SERVER_KEYS:
            server[k] += float(row.get(f"defense_server_{k}", 0.0))  # type: ignore[arg-type]
        client_passes += float(row.get("train_passes", 0.0))  # type: ignore[arg-type]
        client_seconds += float(row.get("train_seconds", 0.0))  # type: ignore[arg-type]
        wall += float(row.get("round_seconds", 0.0))  # type: ignore[arg-type]
    extra: float | None = None
    out: dict[str, object] = {}
    if defense is not None:
        steps = defense.steps
        extra = client_passes * steps / (steps + 1) if defense.name in CLIENT_DEFENSES else 0.0
        out["name"] = defense.name
        if defense.name != "none":
            out.update(eps=defense.eps, alpha=defense_alpha(defense),
                       steps=steps, random_start=defense.random_start)
        if defense.name in SERVER_DEFENSES:
            out.update(fraction=defense.fraction, epochs=defense.epochs, adaptation_data=defense.adaptation_data)
    out.update(server=server, clients={"passes": client_passes, "seconds": client_seconds, "extra_passes": extra},
               wall_seconds=wall)
    return out
