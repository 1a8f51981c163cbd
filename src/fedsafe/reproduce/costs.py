"""The cost model of a plan: how long a training run, an attack evaluation and a membership inference take, in
image passes x the model's multiply-accumulates, at a speed measured on the finished runs under ``RESULTS/runs``
(or a rough default); attack evaluations at the speed their cached records were timed at, when there are any.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..attacks.spec import AttackSpec, Start
from ..build import model_factory
from ..config import ExperimentConfig
from ..data.tasks import TASKS, task_class_names
from ..defaults import crn_steps, global_test_count, server_set_request
from ..names import CLIENT_DEFENSES, PER_CLIENT_DEFENSES, SERVER_DEFENSES
from ..runs.layout import ATTACKS, SUMMARY
from ..runs.run import open_run

__all__ = ["DEFAULT_MACS_PER_SECOND", "audit_passes", "eval_passes", "gradient_passes", "macs_per_image",
           "attack_speeds_by_precision", "speeds_in", "split_sizes",
           "train_passes", "training_speeds_by_precision"]

DEFAULT_MACS_PER_SECOND = 60e9
"""A rough CPU figure for the first estimate, replaced by one measured on the plan's finished runs when there are
any (2-core AVX512-BF16 CPU, cpu profile, bf16 training + fp32 channels-last attacks: 79 GMAC/s measured on the
meningioma CRN run)."""


def _num_classes(cfg: ExperimentConfig) -> int:
    """The task's classes. An image folder's are known only from its folder: read there (its class folders, no
    image opened) when the folder is there, else 2 (the fewest it may have; an estimate before the data exists)."""
    try:
        return len(task_class_names(cfg.task.name, cfg.task.data_root))
    except (ValueError, OSError):  # no folder yet, or none readable
        return max(2, len(TASKS[cfg.task.name].class_names))


def macs_per_image(cfg: ExperimentConfig, memo: dict) -> float:
    """Multiply-accumulates of one forward pass of ``cfg``'s model (memoised in ``memo`` per model: its name, width,
    dropout and ``model.kwargs``, and the task's shape and number of classes)."""
    num_classes = _num_classes(cfg)
    key = (json.dumps(cfg.model.model_dump(mode="json"), sort_keys=True), cfg.task.image_size, cfg.task.channels,
           num_classes)
    if key not in memo:
        model = model_factory(cfg, num_classes=num_classes, in_channels=cfg.task.channels, layout=False,
                              device="cpu")()
        memo[key] = float(model.macs_per_image()) if hasattr(model, "macs_per_image") else math.nan
    return memo[key]


def split_sizes(cfg: ExperimentConfig, n: int) -> tuple[int, int, int]:
    """(client training images, server images, global test images), as the splits would draw them (about): the
    server set the run first asks for (:func:`fedsafe.defaults.server_set_request`; with
    ``splits.server_for_fraction`` F, F x a client's share of the training pool)."""
    s = cfg.splits
    glob = global_test_count(s, n)
    rest = max(n - glob - s.num_clients * s.client_test_size, 0)
    request = server_set_request(s, n)
    server = request if isinstance(request, int) else round(request * n)
    return max(rest - server, 0), server, glob


def _adaptation_images(cfg: ExperimentConfig, n_train: int, n_server: int) -> float:
    """Images one client copy is adapted on: round(f |D_i|) server images (at most the server set), or every attack
    set for the leaky variant."""
    d, s = cfg.defense, cfg.splits
    if d.adaptation_data == "attack-sets":
        return float(s.num_clients * s.client_test_size)
    return min(float(n_server), d.fraction * n_train / s.num_clients)


def train_passes(cfg: ExperimentConfig, n: int) -> float:
    """Forward-backward image passes of a training run on ``n`` images (training, server defense, online CRN,
    evaluation / 3). A per-client server defense adapts every client's copy at every downlink (T + 1 of them), on
    (steps + 1) passes an image and epoch; the shared-model variant one model a round."""
    tr, d, s = cfg.train, cfg.defense, cfg.splits
    n_train, n_server, n_glob = split_sizes(cfg, n)
    passes = tr.rounds * tr.local_epochs * n_train
    if d.name in CLIENT_DEFENSES:
        passes *= d.steps + 1
    per_adapt = _adaptation_images(cfg, n_train, n_server) * (d.steps + 1) * d.epochs
    if d.name in PER_CLIENT_DEFENSES:
        passes += (tr.rounds + 1) * s.num_clients * per_adapt
    elif d.name in SERVER_DEFENSES:  # the shared variant: one model a round
        passes += tr.rounds * per_adapt
    if cfg.crn.enabled:
        passes += s.num_clients * sum(cfg.crn.windows) * crn_steps(cfg) * s.client_test_size
    passes += tr.rounds * (n_glob + 2 * s.num_clients * s.client_test_size) / 3
    return passes


def audit_passes(cfg: ExperimentConfig, n: int, settings: Any) -> float:
    """Image passes of the membership inference on one run (:mod:`fedsafe.audit.mia`, ``settings`` its
    ``MiaSettings``): S shadow models a view, each trained E_s = min(T x E, cap) epochs on the attacker's own data
    (the server set; with several clients, each insider's training set), then every model of a view scoring the
    member candidates and the global test set (forward passes, / 3)."""
    s, tr = cfg.splits, cfg.train
    n_train, n_server, n_glob = split_sizes(cfg, n)
    epochs = min(tr.rounds * tr.local_epochs, settings.max_shadow_epochs)
    insiders = s.num_clients if s.num_clients > 1 else 0
    shadows = settings.shadows * epochs * (n_server + (n_train if insiders else 0))
    return shadows + (1 + insiders) * (settings.shadows + 1) * (n_train + n_glob) / 3


def eval_passes(cfg: ExperimentConfig, spec: AttackSpec) -> float:
    """Image passes of one attack evaluation: every attacker's steps, its labels, every target's clean and
    adversarial predictions, and a CRN start's R x j steps when they are not the run's online buffers (replayed, or
    on the final model); the once-per-run sanity checks are left out."""
    s = cfg.splits
    crn = 0.0
    start: Start = spec.start  # type: ignore[assignment]
    if spec.window:
        own = start.crn_settings(cfg)
        online = cfg.crn.enabled and not start.final and own == Start.crn(own.window).crn_settings(cfg)
        crn = 0.0 if online else float(own.window * own.steps)
    return s.num_clients * s.client_test_size * (spec.passes_per_image + 1 + crn + 2 * s.num_clients / 3)


def gradient_passes(attack: int, crn: int, *, crn_at_attack_time: bool) -> tuple[int, int]:
    """(at attack time, in total) gradient (forward+backward) passes an image of an attack from a start that took
    ``crn`` passes: a CRN start's R x j steps are paid during training when they run on the received copies, at
    attack time when they run on the final model (the control of design §7); in total either way. The attack's
    ``attack`` passes are its steps (x K for EOT, x R for an ensemble); forward-only passes (its labels, the
    targets' predictions) are not gradient passes.

    >>> gradient_passes(1, 50, crn_at_attack_time=False), gradient_passes(1, 50, crn_at_attack_time=True)
    ((1, 51), (51, 51))
    """
    if attack < 0 or crn < 0:
        raise ValueError(f"gradient passes cannot be negative, got attack {attack}, CRN {crn}")
    return (attack + crn if crn_at_attack_time else attack), attack + crn


def attack_speeds_by_precision(runs: Path, memo: dict) -> dict[str | None, list[float]]:
    """MAC/s of every cached attack evaluation under ``runs``, by the precision it ran in: its gradient passes an
    image x 3 forward MACs x the images of a batch, over the seconds a batch took (as its record timed it). Attacks
    run in the attack precision (fp32 by default) while trainings may run in bf16, so the two speeds differ (on the
    2-core AVX512-BF16 CPU: 52 GMAC/s attacking in fp32, 70 training in bf16)."""
    speeds: dict[str | None, list[float]] = {}
    configs: dict[Path, Any] = {}
    for path in sorted(runs.glob(f"*/{ATTACKS}/*.json")) if runs.is_dir() else []:
        try:
            record = json.loads(path.read_text())
            seconds, passes = float(record["attack_seconds_per_batch"]), float(record["fb_passes_per_image"])
            images = min(int(record["batch_size"]), max(int(n) for n in record["n"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not an evaluation record, or one without timing
        run_dir = path.parent.parent
        if run_dir not in configs:
            configs[run_dir] = open_run(run_dir, missing_ok=True).read_records().config
        cfg = configs[run_dir]
        if cfg is not None and cfg.task.name in TASKS and seconds > 0 and passes > 0 and images > 0:
            speeds.setdefault(record.get("precision"), []).append(
                3 * passes * macs_per_image(cfg, memo) * images / seconds)
    return speeds


def training_speeds_by_precision(runs: Path, memo: dict) -> dict[str | None, list[float]]:
    """MAC/s of every finished run under ``runs``, by the precision it trained in: the work :func:`train_passes`
    counts for it over the seconds it took (its task's size from its data report)."""
    speeds: dict[str | None, list[float]] = {}
    for path in sorted(runs.glob(f"*/{SUMMARY}")) if runs.is_dir() else []:
        info = open_run(path.parent, missing_ok=True).read_records()
        cfg = info.config
        try:
            seconds = float(info.summary["seconds"])
            n = sum(info.data_report["kept"].values())
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if cfg is not None and seconds > 0 and n > 0 and cfg.task.name in TASKS:
            speeds.setdefault(info.summary.get("precision"), []).append(
                3 * train_passes(cfg, n) * macs_per_image(cfg, memo) / seconds)
    return speeds


def speeds_in(by_precision: dict[str | None, list[float]], precision: str | None = None) -> list[float]:
    """The speeds measured in ``precision`` (all of them when None)."""
    if precision is not None:
        return list(by_precision.get(precision, []))
    return [s for speeds in by_precision.values() for s in speeds]
