"""The composition root: from a validated config to the objects a run is made of.

Everything that turns an :class:`~fedsafe.config.ExperimentConfig` into data, a model, a federation spec, the
defense's and the attacker's hooks and the privacy report lives here, so the layers below (``data``, ``models``,
``federation``, ``attacks``, ``defenses``, ``privacy``, ``metrics``, ``runs``) never read the whole config and
never import the runners above them (``reproduce``, ``audit``, ``report``, ``flower``, ``cli``).

Example::

    cfg = load_config(profile="cpu"); data = prepare_data(cfg); spec = federation_spec(cfg, data)
    hooks = build_hooks(cfg, data, spec); make = model_factory(cfg, data)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attacks.crn_hook import CrnClientHook
from .config import ExperimentConfig, to_yaml
from .data.augment import augment_batch
from .data.sites import site_splits
from .data.snapshot import load_snapshot, snapshot_settings
from .data.splits import Splits, make_splits
from .data.tasks import TASKS, load_task, load_task_kwargs, task_class_names
from .data.types import DataReport, ImageTable
from .defaults import crn_steps, server_set_request
from .defenses.adaptation import adaptation_counts
from .defenses.defense_registry import defense_hooks
from .device import resolve_device
from .federation.federated_data import FederatedData, build_federated_data
from .federation.federation_spec import FederationSpec, LocalSpec
from .federation.hooks import Hooks
from .models import build_model, check_model
from .precision import resolve_precision, to_channels_last
from .privacy.accountant import SENSITIVITIES, account_run, dp_label
from .privacy.nbafl import calibrate_nbafl
from .privacy.noise_scale import NoiseScale, noise_scale
from .progress import Progress
from .runs.datacheck import check_data
from .runs.fingerprint import fingerprint
from .runs.store import RunStore
from .seeding import numpy_rng, seed_for

__all__ = [
    "AugmentFn", "augment_fn", "build_hooks", "check_configured_model", "check_run_data", "crn_hook",
    "data_fingerprint", "default_data_root", "federation_spec", "model_factory", "model_kwargs",
    "noise_levels", "prepare_data", "privacy_report", "run_device", "run_noise_scale", "write_header",
]

log = logging.getLogger(__name__)

AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

_DATASET_DIRS = {
    "meningioma": "brain-tumor-mri", "glioma": "brain-tumor-mri", "brain-tumor-4class": "brain-tumor-mri",
    "breastmnist": "medmnist", "pcam": "pcam",
}


# -- where things run -----------------------------------------------------------------------------------------------


def run_device(cfg: ExperimentConfig) -> torch.device:
    """The device of ``cfg`` (``train.device``, ``auto`` resolved); DeviceError (one line) if it is not here."""
    return resolve_device(cfg.train.device)


# -- data -----------------------------------------------------------------------------------------------------------


def default_data_root(task: str) -> Path | None:
    """Where a task's data is looked for when ``task.data_root`` is not set:
    ``$FEDSAFE_DATA/<set>``, then ``./data/<set>``, then ``../shared/data/<set>`` (relative to the working dir)."""
    sub = _DATASET_DIRS.get(task)
    if sub is None:
        return None
    candidates = []
    if os.environ.get("FEDSAFE_DATA"):
        candidates.append(Path(os.environ["FEDSAFE_DATA"]) / sub)
    candidates += [Path("data") / sub, Path("..") / "shared" / "data" / sub]
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def load_table(cfg: ExperimentConfig, *, progress: Progress | None = None) -> tuple[ImageTable, DataReport]:
    """The task's de-duplicated image table (near-duplicate groups included) and its data report; from
    ``task.snapshot`` when set (:mod:`fedsafe.data.snapshot`: its settings must equal the config's)."""
    t = cfg.task
    if t.snapshot:
        return load_snapshot(t.snapshot, expected=snapshot_settings(t, seed=cfg.seed))
    root = Path(t.data_root) if t.data_root else default_data_root(t.name)
    return load_task(t.name, data_root=root, seed=cfg.seed, progress=progress, **load_task_kwargs(t))


def _splits(cfg: ExperimentConfig, table: ImageTable, server: int | float) -> Splits:
    s = cfg.splits
    kwargs: dict[str, object] = {}
    if s.partition == "shards":
        kwargs["num_shards"] = s.num_shards
    elif s.partition == "dirichlet":
        kwargs["alpha"] = s.dirichlet_alpha
    glob = int(s.global_test_size) if s.global_test_size >= 1 else float(s.global_test_size)
    if s.partition == "sites":
        if table.sites is None:
            raise ValueError(f"splits.partition=sites: task {cfg.task.name!r} has no sites (task.sites_csv)")
        return site_splits(table.labels, table.sites, num_clients=s.num_clients, client_test_size=s.client_test_size,
                           server_size=server, global_test_size=glob, rng=numpy_rng(cfg.seed, "splits"),
                           groups=table.groups)
    return make_splits(table.labels, num_clients=s.num_clients, client_test_size=s.client_test_size,
                       server_size=server, global_test_size=glob, partition=s.partition, partition_kwargs=kwargs,
                       rng=numpy_rng(cfg.seed, "splits"), groups=table.groups)


def _server_size(cfg: ExperimentConfig, table: ImageTable) -> tuple[Splits, list[str]]:
    """The splits, with the server set sized for ``splits.server_for_fraction`` of the largest client's training
    set when that is set (design §5), else ``splits.server_size``."""
    s = cfg.splits
    n = len(table.labels)
    size = server_set_request(s, n)
    if s.server_for_fraction is None:
        return _splits(cfg, table, size), []
    f = s.server_for_fraction
    # the fixed point, then up until the largest client's round(f |D_i|) fits
    splits = _splits(cfg, table, size)
    for _ in range(20):
        need = max(adaptation_counts(f, [len(c) for c in splits.client_train], n))
        if len(splits.server) >= need:
            return splits, [f"server set sized for f = {f:g} of the largest client's training set: "
                            f"{len(splits.server)} images (largest |D_i| = {max(len(c) for c in splits.client_train)})"]
        if need <= size:  # the pool shrank the held-out sets: a larger request cannot give more
            break
        size = need
        splits = _splits(cfg, table, size)
    note = (f"the pool of {n} images cannot hold a server set of f = {f:g} of the largest client's training set: "
            f"{len(splits.server)} server images (largest |D_i| = {max(len(c) for c in splits.client_train)}); the "
            "defenses adapt on what there is and the tables give the real counts")
    log.warning(note)
    return splits, [note]


def prepare_data(cfg: ExperimentConfig, *, progress: Progress | None = None,
                 device: torch.device | str | None = None) -> FederatedData:
    """Read, de-duplicate and split the task of ``cfg`` into the federation's tensors, on ``device`` (default: the
    run's device; the whole federation is moved there once).

    Raises ValueError naming the set when a set would be empty (a pool too small for the held-out sets).
    """
    table, report = load_table(cfg, progress=progress)
    splits, notes = _server_size(cfg, table)
    report.notes.extend(notes)
    sets = {"global test": splits.global_test, "server": splits.server}
    sets |= {f"client {i} test": t for i, t in enumerate(splits.client_test)}
    sets |= {f"client {i} train": t for i, t in enumerate(splits.client_train)}
    empty = [k for k, v in sets.items() if len(v) == 0]
    if empty:
        raise ValueError(f"task {cfg.task.name!r}: a pool of {len(table.labels)} images leaves the {empty[0]} set "
                         "empty; lower splits.client_test_size / server_size / global_test_size or use more data")
    data = build_federated_data(table, report, splits)
    return data.to(device if device is not None else run_device(cfg))


# -- the model ------------------------------------------------------------------------------------------------------


def model_factory(cfg: ExperimentConfig, data: FederatedData | None = None, *, num_classes: int | None = None,
                  in_channels: int | None = None, layout: bool = True,
                  device: torch.device | str | None = None) -> Callable[[], nn.Module]:
    """A factory of the configured model: a deterministic initialisation from the seed (drawn on the CPU, so every
    device starts from the same weights), in the memory format the run trains in (channels-last if
    ``train.channels_last`` and ``layout``; compiled with ``torch.compile`` if ``train.compile``), on ``device``
    (default: the run's)."""
    if data is not None:
        num_classes, in_channels = len(data.class_names), data.in_channels
    if num_classes is None or in_channels is None:
        raise ValueError("model_factory needs the data, or num_classes and in_channels")
    dev = torch.device(device) if device is not None else run_device(cfg)

    def make() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(cfg.seed, "model-init"))
            model = build_model(cfg.model.name, num_classes=num_classes, in_channels=in_channels,
                                image_size=cfg.task.image_size, kwargs=cfg.model.kwargs, **model_kwargs(cfg))
        model = model.to(dev)
        if layout and cfg.train.channels_last:
            model = to_channels_last(model)
        if layout and cfg.train.compile:
            # in place: the state dict keeps its names (torch.compile(model) would prefix them with _orig_mod.)
            model.compile(dynamic=False)
        return model

    return make


def model_kwargs(cfg: ExperimentConfig) -> dict[str, Any]:
    """The keywords ``model.name`` is built with besides the task's shape and ``model.kwargs``: for the papers'
    CNN ``model.width`` and ``model.dropout`` (which no other model takes), else none."""
    return {"width": cfg.model.width, "dropout": cfg.model.dropout} if cfg.model.name == "paper-cnn" else {}


def check_configured_model(cfg: ExperimentConfig, num_classes: int | None = None) -> None:
    """Build the configured model on the CPU and run one forward pass on a zero batch of the task's shape: a
    factory that cannot be imported or built, or whose output is not (B, num_classes) logits, is a ModelError
    (one line) here, before a run directory is written. ``num_classes`` None: the task's, without reading its
    images."""
    if num_classes is None:
        t = cfg.task
        num_classes = len(task_class_names(t.name, Path(t.data_root) if t.data_root else default_data_root(t.name)))
    model = model_factory(cfg, num_classes=num_classes, in_channels=cfg.task.channels, layout=False,
                          device="cpu")()
    check_model(model, cfg.model.name, num_classes=num_classes, in_channels=cfg.task.channels,
                image_size=cfg.task.image_size)


def augment_fn(cfg: ExperimentConfig) -> AugmentFn | None:
    """The training augmentation of ``cfg`` (None when ``train.augment`` is off)."""
    return augment_batch if cfg.train.augment else None


# -- the federation -------------------------------------------------------------------------------------------------


def noise_levels(cfg: ExperimentConfig, data: FederatedData) -> tuple[float, float, str]:
    """(s_U, s_D, how they were set): calibrated by NbAFL for privacy.calibrate, else as configured."""
    f = cfg.federation
    cal = cfg.privacy.calibrate
    if cal is None:
        return f.uplink_noise, f.downlink_noise, "hand-set"
    m = min(len(s) for s in data.client_train)
    assert f.uplink_clip is not None  # the config validates it
    c = calibrate_nbafl(epsilon=cal.epsilon, delta=cfg.privacy.delta, clip=f.uplink_clip, min_local_size=m,
                        exposures=cal.exposures or cfg.train.rounds, rounds=cfg.train.rounds,
                        num_clients=data.num_clients)
    return c.sigma_uplink, max(c.sigma_downlink, f.downlink_noise), "calibrated (NbAFL)"


def federation_spec(cfg: ExperimentConfig, data: FederatedData, *, device: torch.device | str | None = None
                    ) -> FederationSpec:
    """The rounds of ``cfg`` on ``data``: noise (calibrated or hand-set), aggregation, local training (precision
    resolved for the device)."""
    tr, f = cfg.train, cfg.federation
    dev = torch.device(device) if device is not None else run_device(cfg)
    s_u, s_d, _ = noise_levels(cfg, data)
    local = LocalSpec(epochs=tr.local_epochs, batch_size=tr.batch_size, optimizer=tr.optimizer, lr=tr.lr,
                      momentum=tr.momentum, grad_clip=tr.grad_clip, augment=tr.augment,
                      precision=resolve_precision(tr.precision, dev), channels_last=tr.channels_last,
                      device=str(dev))
    return FederationSpec(rounds=tr.rounds, seed=cfg.seed, local=local, downlink_noise=s_d,
                          uplink_clip=f.uplink_clip, uplink_noise=s_u, weighted=f.weighted,
                          keep_received=f.keep_received_rounds, eval_every=tr.eval_every,
                          eval_batch_size=tr.eval_batch_size, aggregator=f.aggregator, trim_fraction=f.trim_fraction,
                          byzantine=f.byzantine, multi_krum_m=f.multi_krum_m, norm_factor=f.norm_factor,
                          norm_action=f.norm_action)


def crn_hook(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> CrnClientHook:
    """Online CRN of ``cfg.crn`` for every client, on its attack set ``data.client_test[i].x`` (design §7)."""
    c = cfg.crn
    return CrnClientHook(model_factory=model_factory(cfg, data, layout=False, device=spec.local.device),
                         attack_sets=[s.x for s in data.client_test], total_rounds=spec.rounds, windows=c.windows,
                         eps=c.eps, steps=crn_steps(cfg), alpha=c.alpha,
                         centre_grad=c.centre_grad, precision=resolve_precision(c.precision, spec.local.device))


def build_hooks(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> Hooks:
    """The defense of ``cfg.defense`` and, with ``crn.enabled``, every client's online CRN buffer."""
    hooks = defense_hooks(cfg.defense, data, spec, model_factory(cfg, data, device=spec.local.device))
    if cfg.crn.enabled:
        if hooks.client is not None:
            raise ValueError(f"crn.enabled: defense {cfg.defense.name!r} already has a client hook")
        hooks = dataclasses.replace(hooks, client=crn_hook(cfg, data, spec))
    return hooks


# -- the run directory ----------------------------------------------------------------------------------------------


def privacy_report(cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> dict[str, Any]:
    """RDP (conservative) and PLD (tight) accounting of the run's uplink and downlink noise, plus the NbAFL
    calibration when the noise was calibrated, and the defense in force."""
    sizes = [len(s) for s in data.client_train]
    m = min(sizes)
    weights = sizes if spec.weighted else [1] * len(sizes)
    calibrated = cfg.privacy.calibrate is not None
    common = dict(sigma_uplink=spec.uplink_noise, sigma_downlink=spec.downlink_noise, clip=spec.uplink_clip,
                  min_local_size=m, rounds=spec.rounds, num_clients=data.num_clients, delta=cfg.privacy.delta,
                  weights=weights, calibrated=calibrated)
    both = {sens: {acc: account_run(**common, accountant=acc, sensitivity=sens).to_dict() for acc in ("rdp", "pld")}
            for sens in SENSITIVITIES}
    out: dict[str, Any] = {
        "noise": "calibrated (NbAFL)" if calibrated else "hand-set",
        "sigma_uplink": spec.uplink_noise, "sigma_downlink": spec.downlink_noise, "clip": spec.uplink_clip,
        "delta": cfg.privacy.delta, "min_local_size": m, "client_sizes": sizes,
        # the headline numbers: NbAFL's sensitivity 2C/m (the papers' assumption), RDP and PLD accountants
        "sensitivity": "nbafl", "rdp": both["nbafl"]["rdp"], "pld": both["nbafl"]["pld"],
        # and under the unconditional sensitivity 2C of clipped weights (design §4)
        "sensitivities": both,
        "dp": {sens: dp_label(float(both[sens]["pld"]["epsilon"]), cfg.privacy.delta, sensitivity=sens)
               for sens in SENSITIVITIES},
        "defense": {"name": cfg.defense.name},
        # the utility side: the noise's norms beside the clip (privacy/noise_scale.py), every model entry noised
        "noise_scale": run_noise_scale(cfg, uplink=spec.uplink_noise, downlink=spec.downlink_noise,
                                       clip=spec.uplink_clip, client_sizes=sizes, data=data).to_dict(),
    }
    if calibrated:
        cal = cfg.privacy.calibrate
        assert cal is not None and spec.uplink_clip is not None
        out["nbafl"] = calibrate_nbafl(epsilon=cal.epsilon, delta=cfg.privacy.delta, clip=spec.uplink_clip,
                                       min_local_size=m, exposures=cal.exposures or spec.rounds, rounds=spec.rounds,
                                       num_clients=data.num_clients).to_dict()
    return out


def run_noise_scale(cfg: ExperimentConfig, *, uplink: float, downlink: float, clip: float | None,
                    client_sizes: Sequence[int], data: FederatedData | None = None) -> NoiseScale:
    """The noise scale (privacy/noise_scale.py) of a run of ``cfg`` with these noises and client sizes: FedAvg's
    weights (the sizes, or equal when ``federation.weighted`` is off) and every floating-point entry of the
    configured model, built on the CPU (its classes and channels from ``data``, else from the task)."""
    classes = None if data is not None else len(TASKS[cfg.task.name].class_names)
    model = model_factory(cfg, data, num_classes=classes, in_channels=None if data is not None else cfg.task.channels,
                          layout=False, device="cpu")()
    entries = sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
    weights = list(client_sizes) if cfg.federation.weighted else [1] * len(client_sizes)
    return noise_scale(std_uplink=uplink, std_downlink=downlink, entries=entries, weights=weights, clip=clip)


def data_fingerprint(data: FederatedData) -> dict[str, Any]:
    """The fingerprint of the images of ``data`` (:mod:`fedsafe.runs.fingerprint`): the data root they were read
    from, resolved (None for the embedded synthetic task), the preprocessing, and every image's id, label and
    pixels (as the uint8 they were decoded to, whatever device the tensors are on)."""
    sets = [data.global_test, data.server, *data.client_test, *data.client_train]

    def images() -> Any:
        for s in sets:
            pixels = (s.x.detach().float().cpu() * 255).round_().to(torch.uint8).numpy()
            for image_id, y, p in zip(s.ids, s.y.cpu().tolist(), pixels, strict=True):
                yield image_id, y, p.tobytes()

    pre = {**data.report.preprocessing, "shape": [data.in_channels, data.image_size, data.image_size]}
    root = None if data.synthetic else str(Path(data.report.source).resolve())
    return fingerprint(root=root, source=data.report.source, synthetic=data.synthetic, preprocessing=pre,
                       images=images())


def check_run_data(store: RunStore, data: FederatedData, *, doing: str) -> dict[str, Any]:
    """Refuse (RunDataChanged, saying what changed) to ``doing`` ("resume", "attack") the run on data other than
    the data it trained on; returns the data's fingerprint."""
    fp = data_fingerprint(data)
    check_data(store, fp, splits=data.split_ids(), doing=doing)
    return fp


def write_header(store: RunStore, cfg: ExperimentConfig, data: FederatedData, spec: FederationSpec) -> None:
    """The files a run writes before round 1 (both engines); on a resume, the data is checked against the run's
    first (RunDataChanged) and only a missing or damaged header file is written again."""
    fp = check_run_data(store, data, doing="resume")
    privacy = privacy_report(cfg, data, spec)
    store.write_header(config_text=to_yaml(cfg), data_report=data.report.to_dict(), splits=data.split_ids(),
                       privacy_report=privacy, fingerprint=fp)
    if (warning := privacy["noise_scale"]["warning"]) is not None:
        log.warning("%s: %s", store.root, warning)
