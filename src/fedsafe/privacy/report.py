"""The privacy report of a run: which noise it used, and the (epsilon, delta) that noise really gives."""

from __future__ import annotations

from typing import Any

from ..config import ExperimentConfig
from ..federation.data import FederatedData
from ..federation.simulator import FederationSpec
from .accountant import account_run
from .nbafl import calibrate_nbafl

__all__ = ["privacy_report_for"]


def privacy_report_for(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> dict[str, Any]:
    """RDP (conservative) and PLD (tight) accounting of the run's uplink and downlink noise, plus the NbAFL
    calibration when the noise was calibrated, and the defence in force."""
    sizes = [len(s) for s in data.client_train]
    m = min(sizes)
    weights = sizes if spec.weighted else [1] * len(sizes)
    calibrated = cfg.privacy.calibrate is not None
    common = dict(sigma_uplink=spec.uplink_noise, sigma_downlink=spec.downlink_noise, clip=spec.uplink_clip,
                  min_local_size=m, rounds=spec.rounds, num_clients=data.num_clients, delta=cfg.privacy.delta,
                  weights=weights, calibrated=calibrated)
    out: dict[str, Any] = {
        "noise": "calibrated (NbAFL)" if calibrated else "hand-set",
        "sigma_uplink": spec.uplink_noise, "sigma_downlink": spec.downlink_noise, "clip": spec.uplink_clip,
        "delta": cfg.privacy.delta, "min_local_size": m, "client_sizes": sizes,
        "rdp": account_run(**common, accountant="rdp").to_dict(),
        "pld": account_run(**common, accountant="pld").to_dict(),
        "defense": {"name": cfg.defense.name},
    }
    if calibrated:
        cal = cfg.privacy.calibrate
        assert cal is not None and spec.uplink_clip is not None
        out["nbafl"] = calibrate_nbafl(epsilon=cal.epsilon, delta=cfg.privacy.delta, clip=spec.uplink_clip,
                                       min_local_size=m, exposures=cal.exposures or spec.rounds, rounds=spec.rounds,
                                       num_clients=data.num_clients).to_dict()
    return out
