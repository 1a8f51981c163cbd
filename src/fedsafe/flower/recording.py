"""A recorded Flower run (written by :class:`fedsafe.flower.recorder.RecordingStrategy`) read for ``fedsafe audit``,
without Flower: its config, and the run loaded as a :class:`fedsafe.evaluation.run_context.RunContext` from the
user's model factory and an audit data set (:mod:`fedsafe.flower.audit_data`).

A recording's ``config.yaml`` holds what its server could know (``kind: fedsafe-flower-recording``): the model's
factory and keywords, the clients, the rounds, the strategy's class chain and plain settings, any Flower DP
wrapper's noise multiplier and clipping norm. The recording has no fedsafe training config, so the audit builds
one (:func:`audit_config`): the task, image size and channels from the audit data, the clients and rounds from the
recording, the model from the recording, fp32 on the CPU, and the shadow models' training recipe (optimizer, lr,
batch size, local epochs, augmentation) from fedsafe's defaults unless ``--set train.KEY=VALUE`` says otherwise.

Example::

    ctx = load_recorded("runs/my-fl", data=load_audit_data("audit.npz"))
    summary = run_audit(ctx, AuditSettings(quick=True))
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..audit.runner import AuditSettings, run_audit
from ..audit.text import sentences
from ..config import ConfigError, ExperimentConfig, config_hash, load_config
from ..evaluation.run_context import RunContext
from ..federation.federated_data import FederatedData
from ..models import build_model, check_model
from ..models.inference import predict
from ..progress import Progress
from ..runs.atomic import json_safe
from ..runs.layout import CONFIG, SUMMARY
from ..runs.run import open_run
from ..runs.store import RunFileError, RunStore, read_config_text
from ..training.trainer import did_not_learn, majority_rate
from ..yaml12 import YAMLError, dump_yaml, read_yaml
from .audit_data import describe

__all__ = ["KIND", "Recorded", "audit_config", "audit_recorded", "downlink_spread", "inputs_fingerprint",
           "is_recording", "load_recorded", "read_recording", "recording_config", "recording_hash", "recording_yaml"]

log = logging.getLogger(__name__)

KIND = "fedsafe-flower-recording/1"


def recording_config(*, model: str, model_kwargs: Mapping[str, Any], num_clients: int, rounds: int,
                     strategy: Sequence[str], strategy_settings: Mapping[str, Any], dp: Mapping[str, Any],
                     client_key: str, keep_received_rounds: int) -> dict[str, Any]:
    """The ``config.yaml`` of a recording (JSON-plain values only: its hash is the run's config hash)."""
    cfg = {"kind": KIND, "model": {"name": model, "kwargs": dict(model_kwargs)}, "num_clients": int(num_clients),
           "rounds": int(rounds), "strategy": list(strategy), "strategy_settings": dict(strategy_settings),
           "dp": dict(dp), "client_key": client_key, "keep_received_rounds": int(keep_received_rounds)}
    return json.loads(json.dumps(cfg))


def recording_hash(cfg: Mapping[str, Any]) -> str:
    return config_hash(cfg)


def recording_yaml(cfg: Mapping[str, Any]) -> str:
    return dump_yaml(dict(cfg))


def read_recording(root: str | Path) -> dict[str, Any] | None:
    """The recording config at ``root``; None when there is no ``config.yaml`` or it is not a recording's."""
    try:
        text = read_config_text(root)
    except RunFileError:
        return None
    try:
        cfg = read_yaml(text)
    except YAMLError:
        return None
    return cfg if isinstance(cfg, dict) and cfg.get("kind") == KIND else None


def is_recording(root: str | Path) -> bool:
    return read_recording(root) is not None


def audit_config(rec: Mapping[str, Any], data: FederatedData, *, model: str | None = None,
                 model_kwargs: Mapping[str, Any] | None = None, overrides: Iterable[str] = (),
                 seed: int = 0, downlink_noise: float = 0.0) -> ExperimentConfig:
    """The fedsafe config the audit of recording ``rec`` on ``data`` runs under (module docstring). ``model``:
    another factory than the recorded one (its weights must fit); ``downlink_noise``: s_D of the EOT attacker
    (:func:`downlink_spread`). ConfigError (one line) on a bad ``--set`` or model name."""
    allowed = {"train", "seed", "threads"}
    bad = [o for o in overrides if o.partition("=")[0].split(".")[0] not in allowed]
    if bad:
        raise ConfigError(f"--set {bad[0]!r}: a recorded run's audit takes only train.* (the shadow models' "
                          "recipe), seed and threads")
    n = int(rec["num_clients"])
    fixed = [f"seed={seed}", f"task.name={data.task}", f"task.image_size={data.image_size}",
             f"task.channels={data.in_channels}", f"splits.num_clients={n}", f"splits.num_shards={n}",
             f"train.rounds={int(rec['rounds'])}", "train.local_epochs=1", "train.augment=false",
             "train.precision=fp32", "train.channels_last=false", "train.device=cpu",
             f"federation.keep_received_rounds={int(rec.get('keep_received_rounds', 0))}"]
    if downlink_noise:
        fixed.append(f"federation.downlink_noise={downlink_noise!r}")
    cfg = load_config(None, profile="cpu", overrides=[*fixed, *overrides])
    name = model or str(rec["model"]["name"])
    kwargs = dict(rec["model"].get("kwargs") or {}) if model_kwargs is None else dict(model_kwargs)
    try:
        chosen = cfg.model.model_validate({**cfg.model.model_dump(), "name": name, "kwargs": kwargs})
    except ValueError as e:
        raise ConfigError(f"--model {name!r}: {' '.join(str(e).split())[:200]}") from None
    return cfg.model_copy(update={"model": chosen})


def downlink_spread(store: RunStore, num_clients: int) -> tuple[float, int] | None:
    """(s, round): the std of the clients' downlink copies around their mean, pooled over every float weight, in
    the last round whose per-client copies the recording kept (sum of squared deviations / ((m - 1) x weights)
    for m copies). For copies w + n_i with n_i ~ N(0, s_D^2) it estimates s_D. None: no round kept two copies."""
    for t in reversed(store.received_rounds()):
        copies = [store.load_received(t, i) for i in range(num_clients) if store.layout.received(t, i).is_file()]
        if len(copies) < 2:
            continue
        keys = [k for k, v in copies[0].items() if v.is_floating_point()]
        flat = torch.stack([torch.cat([c[k].double().flatten() for k in keys]) for c in copies])
        dev = flat - flat.mean(0)
        return float((dev.square().sum() / ((len(copies) - 1) * flat.shape[1])).sqrt()), t
    return None


def _factory(cfg: ExperimentConfig, data: FederatedData):  # -> Callable[[], nn.Module]
    name, kwargs = cfg.model.name, dict(cfg.model.kwargs)

    def make() -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = build_model(name, num_classes=len(data.class_names), in_channels=data.in_channels,
                                image_size=data.image_size, kwargs=kwargs)
        return model.to(data.device)

    return make


def inputs_fingerprint(cfg: ExperimentConfig, data: FederatedData) -> str:
    """A short hash of what the audit of a recording depends on besides the recording: model, data, recipe."""
    h = hashlib.sha256(json.dumps({"model": cfg.model.model_dump(mode="json"),
                                   "train": cfg.train.model_dump(mode="json"), "seed": cfg.seed},
                                  sort_keys=True).encode())
    for split in (*data.client_train, *data.client_test, data.server, data.global_test):
        h.update(split.x.detach().cpu().contiguous().numpy().tobytes())
        h.update(split.y.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Recorded:
    """A recording loaded for the audit: the run context, the recording's config, the last global model's accuracy
    on the audit's non-members (a fraction), the clients audited with the global model (no final model of their
    own), :func:`inputs_fingerprint` and :func:`downlink_spread` (the EOT attacker's s_D)."""

    context: RunContext
    recording: dict[str, Any]
    global_acc: float
    majority_rate: float
    without_final_model: list[int]
    inputs: str
    downlink_spread: tuple[float, int] | None = None


def load_recorded(root: str | Path, *, data: FederatedData, model: str | None = None,
                  model_kwargs: Mapping[str, Any] | None = None, overrides: Iterable[str] = (), seed: int = 0
                  ) -> Recorded:
    """The complete recording at ``root`` loaded for the audit on ``data``: every client's final model (its last
    returned model; the last global model for a client that never returned one, said in the log and the summary's
    notes), verified through the run's store. ValueError (one line) when it is not a complete recording, the data
    has another number of clients, or the weights do not fit the model."""
    root = Path(root)
    rec = read_recording(root)
    if rec is None:
        raise ValueError(f"{root}: not a recorded Flower run (no {CONFIG} of kind {KIND})")
    store = open_run(root, config_hash=recording_hash(rec)).store
    if not store.is_complete():
        raise ValueError(f"{root}: the recording is not complete (no {SUMMARY}): start the Flower app again on "
                         "it to finish it")
    n, rounds = int(rec["num_clients"]), int(rec["rounds"])
    if data.num_clients != n:
        raise ValueError(f"the audit data holds {data.num_clients} clients' sets, the recording {n} clients")
    spread = downlink_spread(store, n)
    cfg = audit_config(rec, data, model=model, model_kwargs=model_kwargs, overrides=overrides, seed=seed,
                       downlink_noise=spread[0] if spread else 0.0)
    factory = _factory(cfg, data)
    check_model(factory(), cfg.model.name, num_classes=len(data.class_names), in_channels=data.in_channels,
                image_size=data.image_size)
    final_global = store.load_global(rounds)
    models, missing = [], []
    for i in range(n):
        if store.layout.final_model(i).is_file():
            state = store.load_final(i)
        else:
            state, _ = final_global, missing.append(i)
        m = factory()
        try:
            m.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{store.layout.final_model(i)}: the weights do not fit model {cfg.model.name!r} "
                             f"({' '.join(str(e).split())[:160]})") from None
        models.append(m.eval())
    if missing:
        log.warning("clients %s returned no model: the audit uses the last global model as theirs", missing)
    glob = factory()
    glob.load_state_dict(final_global)
    acc = _accuracy(glob.eval(), data)
    learned = not did_not_learn(acc, majority_rate(data.global_test.y))
    ctx = RunContext(store=store, cfg=cfg, data=data, models=models, model_factory=factory, total_rounds=rounds,
                     client_states=None, learned=learned)
    return Recorded(context=ctx, recording=rec, global_acc=acc, majority_rate=majority_rate(data.global_test.y),
                    without_final_model=missing, inputs=inputs_fingerprint(cfg, data), downlink_spread=spread)


def _accuracy(model: torch.nn.Module, data: FederatedData) -> float:
    pred = predict(model, data.global_test.x, batch_size=256)
    return float((pred == data.global_test.y).float().mean())


def _clear_stale(store: RunStore, inputs: str) -> None:
    """Forget the cached audit results of other inputs (another model, data or recipe): they live in
    ``RUN/attacks`` and ``RUN/audit`` and are keyed by the attack settings only."""
    path = store.layout.audit_inputs
    old = store.read_json(path).get("inputs") if path.is_file() else None
    if old is not None and old != inputs:
        log.warning("%s: the cached audit results are of another model, data or recipe: computed again", store.root)
        for sub in store.layout.derived:
            shutil.rmtree(sub, ignore_errors=True)
    store.write_json(path, {"inputs": inputs})


def audit_recorded(root: str | Path, *, data: FederatedData, settings: AuditSettings = AuditSettings(),
                   data_path: str | Path | None = None, model: str | None = None,
                   model_kwargs: Mapping[str, Any] | None = None, overrides: Iterable[str] = (), seed: int = 0,
                   progress: Progress | None = None) -> dict[str, Any]:
    """``fedsafe audit`` of the recording at ``root`` on ``data`` (read from ``data_path``, named in the report):
    :func:`fedsafe.audit.runner.run_audit` on :func:`load_recorded`'s context, then the summary says what
    was recorded and which data, model and shadow recipe the audit used (``summary["recorded"]`` and its first
    sentence); written to ``RUN/audit/audit.json``."""
    rec = load_recorded(root, data=data, model=model, model_kwargs=model_kwargs, overrides=overrides, seed=seed)
    ctx = rec.context
    _clear_stale(ctx.store, rec.inputs)
    summary = run_audit(ctx, settings, progress=progress)
    r, tr = rec.recording, ctx.cfg.train
    used = describe(data, data_path)
    recipe = (f"{tr.optimizer} lr {tr.lr:g}, batch {tr.batch_size}, {tr.local_epochs} local epoch(s) a round, "
              f"augmentation {'on' if tr.augment else 'off'}")
    summary |= {
        "profile": "recorded Flower run", "defense": " > ".join(r["strategy"]),
        "global_acc": rec.global_acc, "majority_class_rate": rec.majority_rate, "learned": ctx.learned,
        "recorded": {"recording": r, "model": {"name": ctx.cfg.model.name, "kwargs": dict(ctx.cfg.model.kwargs)},
                     "data": used, "shadow_recipe": recipe, "inputs": rec.inputs,
                     "downlink_spread": list(rec.downlink_spread) if rec.downlink_spread else None,
                     "clients_audited_with_the_global_model": rec.without_final_model},
    }
    first = (f"Recorded Flower run ({' > '.join(r['strategy'])}, {r['num_clients']} clients, {r['rounds']} rounds), "
             f"audited with model {ctx.cfg.model.name} on the audit data {used['file'] or data.task}"
             f"{' (sha256 ' + used['sha256'][:12] + ')' if used['sha256'] else ''}: insider data test_x_i, members "
             f"train_x_i, non-members heldout_x ({len(data.global_test)} images), the server's shadow data server_x "
             f"({len(data.server)}); shadow models trained with {recipe}; the global model's accuracy is on heldout_x.")
    notes = [f"Clients {rec.without_final_model} returned no model: the audit used the last global model as "
             "theirs."] if rec.without_final_model else []
    if rec.downlink_spread:
        notes.append(f"The clients' downlink copies differ: EOT-PGD's attacker assumes s_D = "
                     f"{rec.downlink_spread[0]:.3g}, their measured spread in round {rec.downlink_spread[1]}.")
    dp = r.get("dp") or {}
    privacy = ("Privacy is not accounted for a recorded run: " + (
        f"its strategy {dp.get('class')} adds noise multiplier {dp.get('noise_multiplier')} at clipping norm "
        f"{dp.get('clipping_norm')} (Flower's accountant, where it was used, has the epsilon)" if dp else
        "its strategy adds no noise fedsafe knows of") + ".")
    summary["attack_notes"] = [
        "no PGD+CRN: every client received one shared copy of the global model (a recording keeps per-client "
        "copies only where they differ)" if x.startswith("no PGD+CRN") else x for x in summary["attack_notes"]]
    rest = [privacy if x.startswith("The noise spent epsilon") else x for x in sentences(summary)]
    summary["sentences"] = [first, *notes, *rest]
    summary = json_safe(summary)
    ctx.store.write_json(ctx.store.layout.audit_summary, summary)
    return summary
