"""Typed, validated, frozen experiment configuration (YAML in, YAML out).

One ``ExperimentConfig`` is composed of parts (task, splits, model, train, federation, privacy, defense).
A run starts from a *profile* (``cpu`` or ``paper``, shipped in ``fedsafe/profiles``), merges the user's YAML
over it, then ``--set key=value`` overrides. Unknown or misspelt keys are errors naming the key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .names import (
    AGGREGATORS,
    BYZANTINE_AGGREGATORS,
    DEFENSES,
    NORM_ACTIONS,
    OPTIMIZERS,
    PARTITIONS,
    PRECISIONS,
    PROFILES,
)
from .yaml12 import DuplicateKeyError, YAMLError, dump_yaml, read_yaml

__all__ = [
    "ConfigError", "ExperimentConfig", "PROFILES", "load_config", "parse_overrides", "config_hash", "to_yaml",
]


class ConfigError(ValueError):
    """A configuration problem, with a one-line message naming the file, key or value."""


def _profile_text(name: str) -> str:
    return resources.files("fedsafe.profiles").joinpath(f"{name}.yaml").read_text()


_CPU: dict[str, Any] = read_yaml(_profile_text("cpu"))


def _cpu(section: str, key: str) -> Any:
    """The cpu profile's ``section.key``: a field that a profile sets takes its default from ``profiles/cpu.yaml``,
    the one place the profile's values are written (``ExperimentConfig()`` is the cpu profile)."""
    return _CPU[section][key]


class _Part(BaseModel):
    # strict: no bool for an int ("rounds: true"), no string for a number; finite numbers only (".inf" refused)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class TaskConfig(_Part):
    name: str = "synthetic"
    data_root: str | None = None  # None: $FEDSAFE_DATA/<dataset>, ./data/<dataset>, ../shared/data/<dataset>
    image_size: int = Field(_cpu("task", "image_size"), ge=8, le=512)
    channels: Literal[1, 3] = _cpu("task", "channels")
    cache_dir: str | None = None
    strict: bool = False
    synthetic_size: int = Field(1200, ge=50)
    # identical files with different labels: "error" stops, "drop" drops every copy; None: the task's default
    # (error; breastmnist: drop, its one known pair)
    label_conflicts: Literal["error", "drop"] | None = None
    # near-duplicate grouping (design §1, data/neardup.py): a pHash Hamming distance finds candidate pairs, a mean
    # |difference| at 256x256 grey in [0, 1] below the threshold confirms them; each group stays in one split
    near_duplicates: bool = True
    near_duplicate_threshold: float = Field(0.02, gt=0, le=1)
    near_duplicate_hash_distance: int = Field(14, ge=0, le=64)
    # adjacent slices of one scan (data/scans.py, measured in docs/results/scan-groups.md): mean |difference| at
    # 128x128 grey below the threshold, or below the loose one with pHashes this close, joins the two images' groups
    # (MRI and image-folder tasks; off with near_duplicates: false or same_scan: false)
    same_scan: bool = True
    same_scan_threshold: float = Field(0.025, gt=0, le=1)
    same_scan_loose_threshold: float = Field(0.035, gt=0, le=1)
    same_scan_hash_distance: int = Field(10, ge=0, le=64)
    # image-folder task: a CSV (file,site[,patient]; a relative path is read from the data root) naming each
    # image's hospital (splits.partition: sites) and patient (one patient's images stay in one set)
    sites_csv: str | None = None
    # a table written by `fedsafe data snapshot` (data/snapshot.py): read the task from it instead of data_root (its
    # settings must equal the ones above)
    snapshot: str | None = None

    @model_validator(mode="after")
    def _scan_thresholds(self) -> TaskConfig:
        if self.same_scan_loose_threshold < self.same_scan_threshold:
            raise ValueError(f"task.same_scan_loose_threshold ({self.same_scan_loose_threshold:g}) must be at least "
                             f"task.same_scan_threshold ({self.same_scan_threshold:g})")
        return self


class SplitConfig(_Part):
    num_clients: int = Field(3, ge=1, le=10_000)
    partition: Literal[PARTITIONS] = "shards"  # sites: task.sites_csv's hospitals
    num_shards: int = Field(15, ge=1)
    dirichlet_alpha: float = Field(0.5, gt=0)
    client_test_size: int = Field(100, ge=1)
    server_size: float = Field(0.1, gt=0)  # < 1: fraction of the pool; >= 1: a count
    # size the server set so that it holds this fraction of the largest client's training set (design §5: the defenses'
    # f is relative to |D_i|); None: server_size as given
    server_for_fraction: float | None = Field(None, gt=0, le=1)
    global_test_size: float = Field(0.15, gt=0)


class ModelConfig(_Part):
    # a registered model (paper-cnn), a MONAI network (monai:DenseNet121) or a factory package.module:factory,
    # called with the task's num_classes, in_channels, image_size and ``kwargs`` (models/external.py)
    name: str = _cpu("model", "name")
    width: float = Field(_cpu("model", "width"), gt=0, le=4)  # paper-cnn only
    dropout: float = Field(_cpu("model", "dropout"), ge=0, lt=1)  # paper-cnn only
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _model_name(cls, v: str) -> str:
        ident = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
        if not re.fullmatch(rf"[a-z0-9][a-z0-9-]*|monai:\w+|{ident}:{ident}", v):
            raise ValueError("must be a registered model (paper-cnn), monai:<Network> or package.module:factory")
        return v

    @field_validator("kwargs")
    @classmethod
    def _json_kwargs(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"must hold plain YAML values (numbers, strings, lists, mappings): {e}") from None
        return v


class TrainConfig(_Part):
    rounds: int = Field(_cpu("train", "rounds"), ge=1)
    local_epochs: int = Field(_cpu("train", "local_epochs"), ge=1)
    batch_size: int = Field(_cpu("train", "batch_size"), ge=1)
    optimizer: Literal[OPTIMIZERS] = _cpu("train", "optimizer")
    lr: float = Field(_cpu("train", "lr"), gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(_cpu("train", "grad_clip"), gt=0)
    augment: bool = True
    precision: Literal[PRECISIONS] = _cpu("train", "precision")
    channels_last: bool = _cpu("train", "channels_last")
    eval_every: int = Field(1, ge=0)  # 0: evaluate only after the last round
    eval_batch_size: int = Field(256, ge=1)
    device: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda | cuda:N
    compile: bool = False  # torch.compile the model for local training and server adaptation (opt-in)

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", v):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return v


class FederationConfig(_Part):
    weighted: bool = True  # FedAvg weights p_i = |D_i| / |D|; False: unweighted mean
    downlink_noise: float = Field(0.0, ge=0)  # s_D, std of each client's own downlink noise
    uplink_clip: float | None = Field(None, gt=0)  # C
    uplink_noise: float = Field(0.0, ge=0)  # s_U
    keep_received_rounds: int = Field(10, ge=0)  # received copies kept for CRN (last R rounds)
    # aggregation of the accepted uploads (design §3): FedAvg, or a robust rule (never a silent default)
    aggregator: Literal[AGGREGATORS] = "fedavg"
    trim_fraction: float = Field(0.1, ge=0, lt=0.5)  # trimmed-mean: share cut at each end, per coordinate
    byzantine: int = Field(0, ge=0)  # krum / multi-krum: clients assumed malicious (f)
    multi_krum_m: int | None = Field(None, ge=1)  # multi-krum: uploads averaged (None: n - f)
    # upload screening: a non-finite upload is always rejected; an update norm above norm_factor x the median is
    # handled by norm_action (None: no norm check). Default: federation.spec.DEFAULT_NORM_FACTOR, far above any
    # honest client's ratio, and reject
    norm_factor: float | None = Field(20.0, gt=1)
    norm_action: Literal[NORM_ACTIONS] = "reject"


class CalibrationConfig(_Part):
    epsilon: float = Field(gt=0)
    exposures: int | None = Field(None, ge=1)  # L; None: T (every client in every round)


class PrivacyConfig(_Part):
    delta: float = Field(1e-5, gt=0, lt=1)
    calibrate: CalibrationConfig | None = None  # set s_U and s_D from NbAFL for this epsilon


class DefenseConfig(_Part):
    name: Literal[DEFENSES] = "none"
    # f: client i's copy is adapted on round(f * |D_i|) server images (design §5; paper: "20% of the training samples")
    fraction: float = Field(0.2, gt=0, le=1)
    # where the server's adaptation examples come from: its own server set, or (a labelled, leaky variant that the
    # authors' code amounts to) the clients' attack sets themselves
    adaptation_data: Literal["server", "attack-sets"] = "server"
    eps: float = Field(0.03, ge=0, le=1)
    alpha: float | None = Field(None, gt=0)  # None: eps / 6 (authors)
    steps: int = Field(6, ge=1)
    random_start: bool = True
    epochs: int = Field(1, ge=1)
    lr: float | None = Field(None, gt=0)  # None: the local training lr
    batch_size: int = Field(32, ge=1)


class CrnConfig(_Part):
    """Online cross-round noise (design §7): every client accumulates it on its own attack/test set,
    so any client can play the attacker afterwards. It does not change training."""

    enabled: bool = False
    windows: tuple[int, ...] = Field((5, 10), strict=False)  # R: CRN5, CRN10
    eps: float = Field(0.05, gt=0, le=1)
    alpha: float | None = Field(None, gt=0)  # None: eps / steps
    steps: int | None = Field(None, ge=1)  # j; None: the number of local epochs (authors: j = E)
    centre_grad: bool = True
    # the online buffers' arithmetic: fp32 (exact, the default) or bf16 (auto: bf16 where the CPU or GPU has it);
    # the demo uses auto, the reproductions fp32
    precision: Literal[PRECISIONS] = "fp32"

    @field_validator("windows")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or min(v) < 1:
            raise ValueError(f"windows must be a non-empty list of rounds >= 1, got {list(v)}")
        return tuple(sorted(set(v)))


class ExperimentConfig(_Part):
    profile: str = "cpu"
    seed: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    task: TaskConfig = TaskConfig()
    splits: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    federation: FederationConfig = FederationConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    defense: DefenseConfig = DefenseConfig()
    crn: CrnConfig = CrnConfig()

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        if v not in PROFILES:
            raise ValueError(f"unknown profile {v!r}; known: {', '.join(PROFILES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        s = self.splits
        if s.partition == "shards" and s.num_shards % s.num_clients:
            raise ValueError(f"splits.num_shards ({s.num_shards}) must be a multiple of splits.num_clients "
                             f"({s.num_clients})")
        if s.partition == "sites" and self.task.sites_csv is None:
            raise ValueError("splits.partition=sites needs task.sites_csv (the image-folder task's CSV of file,site)")
        if self.crn.enabled and max(self.crn.windows) > self.train.rounds:
            raise ValueError(f"crn.windows ({list(self.crn.windows)}) cannot exceed train.rounds ({self.train.rounds})")
        if self.crn.enabled and self.federation.keep_received_rounds < max(self.crn.windows):
            raise ValueError(f"federation.keep_received_rounds ({self.federation.keep_received_rounds}) must be at "
                             f"least the largest CRN window ({max(self.crn.windows)}): CRN is replayed from the kept "
                             "copies")
        f = self.federation
        if f.aggregator in BYZANTINE_AGGREGATORS and s.num_clients < 2 * f.byzantine + 3:
            raise ValueError(f"federation.aggregator {f.aggregator} tolerates byzantine={f.byzantine} clients only "
                             f"with at least {2 * f.byzantine + 3} clients (splits.num_clients={s.num_clients})")
        if self.defense.name == "adversarial-training" and f.downlink_noise > 0:
            raise ValueError("defense adversarial-training adapts the clean global model (s_D = 0); with "
                             f"federation.downlink_noise={f.downlink_noise:g} use defense fed-safe")
        if self.privacy.calibrate is not None and self.federation.uplink_clip is None:
            raise ValueError("privacy.calibrate needs federation.uplink_clip (C) to be set")
        return self


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any], *, origin: str = "config",
                path: str = "") -> dict[str, Any]:
    """``over`` merged into ``base``, section by section. Keys given for what ``base`` holds as a plain value
    (``train: 5`` in a file, then ``--set train.local_epochs=1``) are a ConfigError naming it, never a silent
    replacement of the value."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v, origin=origin, path=f"{path}{k}.")
        elif isinstance(v, Mapping) and out.get(k) is not None:
            raise ConfigError(f"{origin}: {path}{k} is {out[k]!r}, not a section: cannot set "
                              f"{', '.join(f'{path}{k}.{sub}' for sub in v)} in it")
        else:
            out[k] = v
    return out


def _profile_dict(name: str) -> dict[str, Any]:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    return read_yaml(_profile_text(name)) or {}


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.rounds=5", "task.name=glioma"]`` -> nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, _, raw = item.partition("=")
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key")
        try:
            value = read_yaml(raw) if raw.strip() else None
        except YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({e.__class__.__name__})") from None
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is both a value and a section")
        node[parts[-1]] = value
    return out


def _one_line(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{loc}'"
    msg = first["msg"].removeprefix("Value error, ")
    val = first.get("input")
    shown = "" if isinstance(val, dict) else f" (got {val!r})"
    return f"{origin}: {loc}: {msg}{shown}"


def load_config(path: str | Path | None = None, *, profile: str | None = None,
                overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Profile, then the YAML file, then ``key=value`` overrides. Raises ConfigError (one line) on bad input."""
    user: dict[str, Any] = {}
    origin = "config"
    if path is not None:
        path = Path(path)
        origin = str(path)
        try:
            user = read_yaml(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except DuplicateKeyError as e:
            raise ConfigError(f"{path}: {e}") from None
        except YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}: not valid YAML{where}") from None
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: top level must be a mapping of keys")
    over = parse_overrides(overrides)
    prof = over.get("profile") or profile or user.get("profile") or "cpu"
    merged = _deep_merge(_deep_merge(_profile_dict(str(prof)), user, origin=origin), over,
                         origin=f"{origin} (with --set)")
    merged["profile"] = prof
    try:
        return ExperimentConfig.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_one_line(e, origin if not over else f"{origin} (with --set)")) from None


def to_yaml(cfg: ExperimentConfig) -> str:
    return dump_yaml(cfg.model_dump(mode="json"))


ADDED_LATER = {"crn.precision": "fp32", "task.snapshot": None}
"""Fields added after runs were written, with the value every earlier run had: while a config holds that value the
field is left out of its hash (:func:`hashed_dump`), so earlier runs keep their hashes (resumable, auditable,
cached). A new field goes here with its default."""


def hashed_dump(cfg: ExperimentConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The config as hashed: its JSON dump without the :data:`ADDED_LATER` fields that hold their old value."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else json.loads(json.dumps(dict(cfg)))
    for dotted, old in ADDED_LATER.items():
        *parents, leaf = dotted.split(".")
        node: Any = data
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(leaf, old) == old:
            node.pop(leaf, None)
    return data


def config_hash(cfg: ExperimentConfig | Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(hashed_dump(cfg), sort_keys=True).encode()).hexdigest()
