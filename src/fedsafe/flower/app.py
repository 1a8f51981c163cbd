"""What the Flower ServerApp and ClientApp share: the run configuration they are driven by, the conversion of
state dicts to Flower records, and the federation both sides build from one fedsafe config.

Both sides derive *everything* from the same :class:`fedsafe.config.ExperimentConfig`, carried in Flower's run
config (``fedsafe-config``: the resolved YAML, base64-encoded so no TOML quoting can alter it). The server and
every client call :func:`fedsafe.build.prepare_data` on it and get the same deterministic splits, so
client ``i`` trains on ``prepare_data(cfg).client_train[i]`` with ``i`` = its ``partition-id`` (node config).

The prepared federation is cached per process, keyed by the config text: it is read-only (data, spec, hooks,
a scratch model whose weights every use overwrites). State that must cross rounds (the client hook's, e.g.
the CRN buffers) never lives here: it lives in Flower's ``context.state``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord
from torch import nn

from .. import __version__
from ..build import augment_fn, build_hooks, federation_spec, model_factory, prepare_data
from ..config import ConfigError, ExperimentConfig, to_yaml
from ..device import resolve_device
from ..federation.federated_data import FederatedData
from ..federation.federation_spec import FederationSpec
from ..federation.hooks import Hooks
from ..federation.state import clone
from ..yaml12 import YAMLError, read_yaml

__all__ = [
    "RUN_CONFIG_DEFAULTS", "APP_PYPROJECT", "FlowerRun", "encode_config", "decode_config", "build_flower_run",
    "run_config_for", "state_to_record", "record_to_state", "partition_fingerprint", "write_app_project",
    "set_threads",
]

# Keys of Flower's run config (``[tool.flwr.app.config]``); a run may override only keys declared here.
RUN_CONFIG_DEFAULTS: dict[str, Any] = {
    "fedsafe-config": "",  # base64 of the resolved config YAML
    "run-dir": "",  # where the ServerApp writes the run directory (on the SuperLink's machine)
    "threads": 0,  # torch intra-op threads of every ServerApp / ClientApp process; 0: torch's default
    "device": "",  # device of the ServerApp (its evaluation and defense); "": the config's train.device
    "stop-after": 0,  # stop after this round (0: run to the end); a later run resumes
    "round-timeout": 3600.0,  # seconds the server waits for the replies of one round
    "engine": "flower",  # recorded in summary.json
}

APP_PYPROJECT = """\
# The Flower app of fedsafe (written by `fedsafe flower app`). The code is the installed fedsafe package:
# every machine needs `pip install 'fedsafe[flower]'` of the same version. The dependency list stays EMPTY on
# purpose: otherwise each run installs it into a fresh environment (a CUDA torch download).
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "fedsafe-flower"
version = "{version}"
description = "fedsafe on Flower: distributed downlink noise, clipped and noised uplinks, Fed-Safe defenses, CRN"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "fedsafe"

[tool.flwr.app.components]
serverapp = "fedsafe.flower.server_app:app"
clientapp = "fedsafe.flower.client_app:app"

[tool.flwr.app.config]
{config}
"""


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_app_project(directory: str | Path) -> Path:
    """Write the Flower app project (a ``pyproject.toml``) into ``directory``; returns the directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cfg = "\n".join(f"{k} = {_toml_value(v)}" for k, v in RUN_CONFIG_DEFAULTS.items())
    text = APP_PYPROJECT.format(version=__version__, config=cfg)
    path = d / "pyproject.toml"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return d


def encode_config(cfg: ExperimentConfig) -> str:
    """The resolved config as run-config text (base64 of its YAML)."""
    return base64.b64encode(to_yaml(cfg).encode()).decode("ascii")


def decode_config(text: str) -> ExperimentConfig:
    """Inverse of :func:`encode_config`; raises ConfigError with one line on anything else."""
    if not text:
        raise ConfigError("Flower run config has no 'fedsafe-config': start the run with `fedsafe flower simulate` "
                          "or `fedsafe flower run`, which pass the experiment config")
    try:
        data = read_yaml(base64.b64decode(text.encode("ascii"), validate=True).decode())
    except (binascii.Error, UnicodeError, ValueError, YAMLError):
        raise ConfigError("Flower run config 'fedsafe-config' is not a base64-encoded fedsafe config") from None
    return ExperimentConfig.model_validate(data)


def run_config_for(cfg: ExperimentConfig, *, run_dir: str = "", threads: int | None = None, stop_after: int = 0,
                   round_timeout: float = 3600.0, engine: str = "flower", device: str = "") -> dict[str, Any]:
    """The run config of a fedsafe Flower run (every key of :data:`RUN_CONFIG_DEFAULTS`)."""
    out = dict(RUN_CONFIG_DEFAULTS)
    out.update({"fedsafe-config": encode_config(cfg), "run-dir": str(run_dir), "threads": int(threads or 0),
                "stop-after": int(stop_after), "round-timeout": float(round_timeout), "engine": engine,
                "device": device})
    return out


def set_threads(run_config: Mapping[str, Any]) -> None:
    """Apply the run's torch thread count to this (ServerApp or ClientApp) process."""
    n = int(run_config.get("threads", 0) or 0)
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def state_to_record(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """A state dict (name -> tensor) as a Flower ``ArrayRecord`` (exact: dtype, shape and values kept)."""
    if not state:
        return ArrayRecord()
    return ArrayRecord({k: v.detach().cpu().contiguous() for k, v in state.items()})


def record_to_state(record: ArrayRecord, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_to_record`, in the record's key order, on ``device``."""
    if len(record) == 0:
        return {}
    return {k: v.to(device) for k, v in record.to_torch_state_dict().items()}


def partition_fingerprint(data: FederatedData, client: int) -> str:
    """A short hash of client ``client``'s image ids (train and test): server and client must agree on it, or they
    did not read the same data."""
    h = hashlib.sha256()
    for ids in (data.client_train[client].ids, data.client_test[client].ids):
        h.update("\n".join(ids).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class FlowerRun:
    """The federation of one config, as both Flower sides build it (see the module docstring)."""

    cfg: ExperimentConfig
    data: FederatedData
    spec: FederationSpec
    hooks: Hooks
    model: nn.Module  # scratch instance in the training memory format; every use loads its weights first
    initial_state: dict[str, torch.Tensor]  # the seeded initial weights (the scratch model's are overwritten)

    @property
    def augment_fn(self):
        return augment_fn(self.cfg)

    def partition(self, node_config: Mapping[str, Any]) -> int:
        """This node's fedsafe client index: its ``partition-id``, checked against the federation."""
        n = self.data.num_clients
        if "partition-id" not in node_config:
            raise ValueError("this SuperNode has no partition-id: start it with --node-config "
                             f"'partition-id=I num-partitions={n}' (I in 0..{n - 1})")
        i = int(node_config["partition-id"])
        if "num-partitions" in node_config and int(node_config["num-partitions"]) != n:
            raise ValueError(f"node config says num-partitions={node_config['num-partitions']} but the fedsafe "
                             f"config has splits.num_clients={n}")
        if not 0 <= i < n:
            raise ValueError(f"partition-id {i} is outside 0..{n - 1} (splits.num_clients={n})")
        return i


@functools.lru_cache(maxsize=2)
def build_flower_run(config_text: str, device: str = "") -> FlowerRun:
    """Build (once per process, config and device) the data, spec, hooks and a scratch model of a run, on this
    machine's ``device`` ("" : the config's ``train.device``; a hospital's GPU node and a CPU node can join one
    run: the random draws are the same on every device)."""
    cfg = decode_config(config_text)
    dev = resolve_device(device or cfg.train.device)
    data = prepare_data(cfg, device=dev)
    spec = federation_spec(cfg, data, device=dev)
    model = model_factory(cfg, data, device=dev)()
    return FlowerRun(cfg=cfg, data=data, spec=spec, hooks=build_hooks(cfg, data, spec), model=model,
                     initial_state=clone(model.state_dict()))
