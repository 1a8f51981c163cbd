"""The reader and writer of a run directory's files (their names: :mod:`fedsafe.runs.layout`; the one way to open a
run: :func:`fedsafe.runs.open_run`, whose :attr:`~fedsafe.runs.run.Run.store` this is).

Every model file and the checkpoint carry the run's config hash and a content hash (sha256 of the tensors), so a
file copied from another run, truncated or corrupted is refused with a one-line error naming it
(:class:`RunFileError`) instead of silently mixing runs. The checkpoint of the previous round is kept beside the
current one: if the current one cannot be verified, a resume continues from the last verified round.

Every model file's header names its kind, round and client: a load checks them against the file it was asked for,
so model files swapped inside one run (``final/client_000.pt`` and ``client_001.pt``, a later round's received copy
copied over an earlier one) are refused too.

A run directory is written by one process at a time: :meth:`RunStore.lock` refuses a folder that is not new, empty
or a fedsafe run (:mod:`fedsafe.runs.claim`), takes an exclusive lock (a second writer is refused with a message
naming the holder's pid) and removes the temporary files of its own writes that a killed write left behind.

The data a run trained on is recorded (``data_fingerprint.json``, :mod:`fedsafe.runs.fingerprint`):
:func:`fedsafe.runs.datacheck.check_data` refuses a resume, an attack or an audit on other data.

Example::

    store = RunStore("runs/exp", config_hash=config_hash(cfg))
    with store.lock():
        store.save_round(...); ck = store.load_checkpoint(rounds=20, num_clients=3)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import claim
from .atomic import torch_load, torch_save, write_json, write_text
from .errors import RunDataChanged, RunFileError, RunFileMissing, RunIncomplete, RunLockedError
from .layout import RunLayout

__all__ = ["FORMAT", "Checkpoint", "RunDataChanged", "RunFileError", "RunFileMissing", "RunIncomplete",
           "RunLockedError", "RunStore", "read_config_text", "state_digest"]

log = logging.getLogger(__name__)

FORMAT = "fedsafe-run/2"
"""Written into every model file and checkpoint; files of another format are refused."""

_LOAD_ERRORS = (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
                KeyError, TypeError, AttributeError)


def state_digest(*states: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor of ``states``, in order."""
    h = hashlib.sha256()
    for state in states:
        for k, v in state.items():
            t = v.detach().cpu().contiguous()
            h.update(f"{k}|{t.dtype}|{tuple(t.shape)}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        h.update(b"\0")
    return h.hexdigest()


def _cpu(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


@dataclass(frozen=True)
class Checkpoint:
    """The last completed round: everything that crosses rounds."""

    round: int
    rounds: int
    num_clients: int
    global_state: dict[str, torch.Tensor]
    client_states: list[dict[str, torch.Tensor]]
    metrics: list[dict[str, Any]]
    path: Path


def read_config_text(root: str | Path) -> str:
    """``RUN/config.yaml`` as text; RunFileError when it is missing (not a run directory) or unreadable."""
    path = RunLayout(Path(root)).config
    try:
        return path.read_text()
    except FileNotFoundError:
        raise RunFileMissing(f"{path}: missing: {path.parent} is not a fedsafe run directory") from None
    except (OSError, UnicodeError) as e:
        raise RunFileError(f"{path}: unreadable ({e.__class__.__name__})") from None


class RunStore:
    """Read and write one run directory, checking that every file belongs to the run of ``config_hash``.

    ``config_hash`` is :func:`fedsafe.config.config_hash` of the run's config (the reader of a finished run
    takes it from the run's own ``config.yaml``).
    """

    def __init__(self, root: str | Path, *, config_hash: str) -> None:
        if not config_hash:
            raise ValueError("a run store needs the run's config hash")
        self.layout = RunLayout(Path(root))
        self.config_hash = config_hash

    @property
    def root(self) -> Path:
        return self.layout.root

    # -- identity -----------------------------------------------------------------------------------------------

    def has_config(self) -> bool:
        return self.layout.config.is_file()

    def is_complete(self) -> bool:
        """Whether ``summary.json`` (written last) is there and valid: a damaged one leaves the run to be finished
        again, which recomputes it from the checkpoint."""
        return self.layout.is_complete()

    def damaged(self) -> list[Path]:
        """The run's JSON files that are there but not valid JSON."""
        d = self.layout
        return [p for p in (d.summary, d.privacy_report, d.data_report, d.splits, d.metrics, d.data_fingerprint)
                if self.json_state(p) == "damaged"]

    # -- locking ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, wait: float = 0.0, poll: float = 5.0) -> Iterator[None]:
        """Hold the run directory exclusively for the block (:func:`fedsafe.runs.claim.hold`: a folder that is not
        new, empty or a run is refused untouched; the marker is written first; the run's own stale temporary files
        go). Another holder: wait up to ``wait`` seconds for it (0: refuse at once), then raise RunLockedError
        naming the holder's pid. A block that wrote nothing leaves nothing behind."""
        with claim.hold(self.root, wait=wait, poll=poll):
            yield

    def clean_tmp(self) -> int:
        """Delete the temporary files of the run's own writes that were killed; returns how many."""
        return claim.clean_own_tmp(self.root)

    # -- header and summary -------------------------------------------------------------------------------------

    def json_state(self, path: Path) -> str:
        """``"ok"`` (valid JSON), ``"missing"`` or ``"damaged"``."""
        try:
            self.read_json(path)
        except RunFileMissing:
            return "missing"
        except RunFileError:
            return "damaged"
        return "ok"

    def trained(self) -> bool:
        """Whether a round was completed (a checkpoint exists; it may still fail its check)."""
        return self.layout.checkpoint.exists() or self.layout.previous_checkpoint.exists()

    def write_header(self, *, config_text: str, data_report: Mapping[str, Any], splits: Mapping[str, Any],
                     privacy_report: Mapping[str, Any], fingerprint: Mapping[str, Any] | None = None) -> None:
        """The files a run writes before round 1: config, data fingerprint, data report, splits, privacy report.

        Before any round was trained every file is (re)written; after, only a missing or damaged one is (the data
        is the run's, :meth:`check_data`): a resume never replaces the record of what the run trained on."""
        self.root.mkdir(parents=True, exist_ok=True)
        fresh = not self.trained()
        if fresh or not self.layout.config.is_file():
            write_text(self.layout.config, config_text)
        files = [(self.layout.data_fingerprint, fingerprint), (self.layout.data_report, data_report),
                 (self.layout.splits, splits), (self.layout.privacy_report, privacy_report)]
        for path, obj in files:
            if obj is None:
                continue
            state = self.json_state(path)
            if fresh or state != "ok":
                if state == "damaged":
                    log.warning("%s: damaged; written again from the run's config and data", path)
                write_json(path, obj)
        if self.json_state(self.layout.metrics) == "damaged" and (ck := self.load_checkpoint()) is not None:
            log.warning("%s: damaged; written again from the checkpoint", self.layout.metrics)
            write_json(self.layout.metrics, ck.metrics)

    def incomplete(self, rounds: int) -> RunIncomplete:
        """The error of a run that has no final models yet: how far it got."""
        try:
            ck = self.load_checkpoint()
        except (RunFileError, ValueError):
            ck = None
        done = ck.round if ck is not None else 0
        total = ck.rounds if ck is not None else rounds
        return RunIncomplete(f"{self.root}: the run is not complete (round {done} of {total}"
                             f"{'; no summary.json' if done == total else ''}); finish it first: fedsafe train "
                             f"--config {self.layout.config} -o {self.root}")

    def read_json(self, path: Path) -> Any:
        """A JSON file of the run; RunFileError naming it when missing or not valid JSON."""
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise RunFileMissing(f"{path}: missing") from None
        except (OSError, UnicodeError, ValueError) as e:
            raise RunFileError(f"{path}: not valid JSON ({e.__class__.__name__}); the file is damaged") from None

    def write_json(self, path: Path, obj: Any) -> None:
        write_json(path, obj)

    # -- model files --------------------------------------------------------------------------------------------

    def save_state(self, path: Path, state: Mapping[str, torch.Tensor], *, kind: str, round_: int | None = None,
                   client: int | None = None) -> None:
        """Write one model (``kind``: global, received, final) with the run's config hash and its content hash."""
        cpu = _cpu(state)
        torch_save({"format": FORMAT, "config_hash": self.config_hash, "kind": kind, "round": round_,
                    "client": client, "sha256": state_digest(cpu), "state": cpu}, path)

    def load_state(self, path: Path, *, kind: str | None = None, round_: int | None = None,
                   client: int | None = None) -> dict[str, torch.Tensor]:
        """Read and verify one model file (module docstring): the run's, of ``kind``, and of the round and client
        the caller asked for (when given); RunFileError naming it otherwise."""
        obj = self._load(path)
        if not isinstance(obj, dict) or obj.get("format") != FORMAT or "state" not in obj:
            raise RunFileError(f"{path}: not a fedsafe model file of this version (train the run again)")
        if obj.get("config_hash") != self.config_hash:
            raise RunFileError(f"{path}: belongs to another run (config hash {str(obj.get('config_hash'))[:12]}, "
                               f"this run's {self.config_hash[:12]}); it was copied from elsewhere")
        if kind is not None and obj.get("kind") != kind:
            raise RunFileError(f"{path}: holds a {obj.get('kind')} model, expected a {kind} model")
        for name, want in (("round", round_), ("client", client)):
            if want is not None and obj.get(name) != want:
                raise RunFileError(f"{path}: holds the model of {name} {obj.get(name)}, not of {name} {want}: model "
                                   "files were swapped or copied within the run")
        state = obj["state"]
        if state_digest(state) != obj.get("sha256"):
            raise RunFileError(f"{path}: content check failed (the file was modified or damaged)")
        return state

    @staticmethod
    def _load(path: Path) -> Any:
        if not path.is_file():
            raise RunFileMissing(f"{path}: missing")
        if path.stat().st_size == 0:
            raise RunFileError(f"{path}: empty file (a damaged or interrupted copy)")
        try:
            return torch_load(path)
        except _LOAD_ERRORS as e:
            raise RunFileError(f"{path}: unreadable ({e.__class__.__name__}: truncated or not a fedsafe file)") \
                from None

    def save_global(self, round_: int, state: Mapping[str, torch.Tensor]) -> None:
        self.save_state(self.layout.global_model(round_), state, kind="global", round_=round_)

    def load_global(self, round_: int) -> dict[str, torch.Tensor]:
        return self.load_state(self.layout.global_model(round_), kind="global", round_=round_)

    def save_received(self, round_: int, client: int, state: Mapping[str, torch.Tensor]) -> None:
        self.save_state(self.layout.received(round_, client), state, kind="received", round_=round_, client=client)

    def load_received(self, round_: int, client: int) -> dict[str, torch.Tensor]:
        return self.load_state(self.layout.received(round_, client), kind="received", round_=round_, client=client)

    def received_rounds(self) -> list[int]:
        return self.layout.received_rounds()

    def received_window(self, client: int, rounds: range) -> list[dict[str, torch.Tensor]]:
        """Client ``client``'s received copies of ``rounds`` (oldest first), verified; RunFileError naming the first
        missing one and the rounds the run kept (CRN replay needs the last R rounds)."""
        missing = [t for t in rounds if not self.layout.received(t, client).is_file()]
        if missing:
            kept = self.received_rounds()
            held = f"rounds {kept[0]}..{kept[-1]}" if kept else "no rounds"
            raise RunFileMissing(f"{self.layout.received(missing[0], client)} is missing: the replay needs the copies "
                               f"of rounds {rounds[0]}..{rounds[-1]} but the run kept {held} (raise "
                               "federation.keep_received_rounds)")
        return [self.load_received(t, client) for t in rounds]

    def save_final(self, client: int, state: Mapping[str, torch.Tensor]) -> None:
        self.save_state(self.layout.final_model(client), state, kind="final", client=client)

    def load_final(self, client: int) -> dict[str, torch.Tensor]:
        return self.load_state(self.layout.final_model(client), kind="final", client=client)

    # -- rounds and the checkpoint ------------------------------------------------------------------------------

    def save_round(self, round_: int, *, rounds: int, global_state: Mapping[str, torch.Tensor],
                   received: Sequence[Mapping[str, torch.Tensor]] | None,
                   client_states: Sequence[Mapping[str, torch.Tensor]], metrics: Sequence[Mapping[str, Any]],
                   keep_from: int) -> None:
        """Write round ``round_``: the global model, the received copies (``received``; None when the round is not
        kept), the metrics, then the checkpoint (last: a round counts as completed only once it exists); the
        previous checkpoint is kept as ``checkpoint.prev.pt``. Received copies of rounds before ``keep_from`` go.
        Every tensor is copied to the host once (the run may train on a GPU)."""
        g = _cpu(global_state)
        self.save_state(self.layout.global_model(round_), g, kind="global", round_=round_)
        if received is not None:
            for i, s in enumerate(received):
                self.save_received(round_, i, s)
        write_json(self.layout.metrics, list(metrics))
        cs = [_cpu(s) for s in client_states]
        payload = {"format": FORMAT, "config_hash": self.config_hash, "round": round_, "rounds": rounds,
                   "num_clients": len(cs), "global_state": g, "client_states": cs, "metrics": list(metrics),
                   "sha256": state_digest(g, *cs)}
        if self.layout.checkpoint.is_file():
            os.replace(self.layout.checkpoint, self.layout.previous_checkpoint)
        torch_save(payload, self.layout.checkpoint)
        self.layout.prune_received(keep_from)

    def _read_checkpoint(self, path: Path) -> Checkpoint:
        obj = self._load(path)
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise RunFileError(f"{path}: not a fedsafe checkpoint of this version (train the run again)")
        if obj.get("config_hash") != self.config_hash:
            raise RunFileError(f"{path}: checkpoint of another run (config hash {str(obj.get('config_hash'))[:12]},"
                               f" this run's {self.config_hash[:12]}); it was copied from elsewhere")
        if state_digest(obj["global_state"], *obj["client_states"]) != obj.get("sha256"):
            raise RunFileError(f"{path}: content check failed (the file was modified or damaged)")
        self._check_round(path, obj)
        return Checkpoint(round=int(obj["round"]), rounds=int(obj["rounds"]), num_clients=int(obj["num_clients"]),
                          global_state=obj["global_state"], client_states=list(obj["client_states"]),
                          metrics=list(obj["metrics"]), path=path)

    def _check_round(self, path: Path, obj: Mapping[str, Any]) -> None:
        """The checkpoint of round r holds r metric rows and the global model that ``models/global`` has for r."""
        r = int(obj["round"])
        rows = [m.get("round") for m in obj["metrics"]]
        if len(rows) != r or (rows and rows[-1] != r):
            raise RunFileError(f"{path}: holds round {r} but the metrics of {len(rows)} round(s): a damaged or "
                               "swapped checkpoint")
        g = self.layout.global_model(r)
        try:
            head = self._load(g)
        except RunFileError:  # a missing or damaged model file is named by its own reader
            return
        if isinstance(head, dict) and head.get("round") == r and head.get("sha256") != state_digest(
                obj["global_state"]):
            raise RunFileError(f"{path}: holds round {r}, but not the global model of {g}: a checkpoint of another "
                               "round or a swapped model file")

    def load_checkpoint(self, *, rounds: int | None = None, num_clients: int | None = None) -> Checkpoint | None:
        """The last verified round, or None when the run has not completed a round. Falls back to the previous
        checkpoint (one round earlier) when the current one cannot be verified; raises RunFileError (naming the
        file) when neither can, and ValueError when the checkpoint is for another federation."""
        current, prev = self.layout.checkpoint, self.layout.previous_checkpoint
        if not current.exists() and not prev.exists():
            return None
        try:
            ck = self._read_checkpoint(current)
        except RunFileError as first:
            if not prev.exists():
                raise
            try:
                ck = self._read_checkpoint(prev)
            except RunFileError:
                raise first from None
            log.warning("%s; resuming from the previous checkpoint (round %d)", first, ck.round)
        if (rounds is not None and ck.rounds != rounds) or (num_clients is not None and ck.num_clients != num_clients):
            raise ValueError(f"{ck.path}: checkpoint is for a different federation ({ck.num_clients} clients, "
                             f"{ck.rounds} rounds)")
        return ck

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """``summary.json``, written last: the run is complete once it exists."""
        write_json(self.layout.summary, summary)
