"""The result of one attack configuration on a run, and its files: a tidy table (one row per attacker and target)
and a JSON record (the spec, the summary, the matrices, cost and sanity warnings), written atomically to
``RUN/attacks/<key>.csv`` and ``RUN/attacks/<key>.json``; ``<key>`` names the attack and start, followed by a hash
of the whole configuration (:meth:`fedsafe.attacks.spec.AttackSpec.key`). This module is their one writer and reader.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..attacks.spec import AttackSpec
from ..metrics.transfer import TransferMatrices, TransferSummary, summarise, transfer_matrices
from ..runs.atomic import write_json, write_text
from ..runs.layout import RunLayout

__all__ = ["COLUMNS", "TransferResult", "attack_records", "make_result", "read_evaluation", "tidy"]

log = logging.getLogger(__name__)

COLUMNS = ["attacker", "target", "self", "label", "attack", "eps", "alpha", "steps", "start", "start_source", "seed",
           "labels", "centre_grad", "precision", "n", "clean_acc", "attack_acc", "asr", "asr_literal", "aetr",
           "n_correct", "n_aetr", "grad_cosine", "attack_seconds_per_batch", "batch_size", "batches",
           "fb_passes_per_image", "forward_passes_per_image", "crn_window", "crn_steps", "crn_alpha",
           "crn_centre_grad", "crn_passes_per_image", "crn_seconds", "eot_samples", "eot_noise_std", "surrogates"]
"""The columns of the tidy table, in order."""


@dataclass(frozen=True)
class TransferResult:
    """One attack configuration evaluated on a run."""

    spec: AttackSpec
    key: str
    frame: pd.DataFrame
    matrices: TransferMatrices
    summary: TransferSummary
    alignment: np.ndarray  # (M, C) mean input-gradient cosine
    record: dict[str, Any]  # the JSON summary
    csv_path: Path | None = None
    json_path: Path | None = None


def nanmean(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def make_result(spec: AttackSpec, rows: list[dict[str, Any]], trows: list, align: np.ndarray, *, key: str,
                run: dict[str, Any], warnings: list[str], precision: str, crn_precision: str,
                layout: RunLayout | None) -> TransferResult:
    """The result of ``spec`` from its per-(attacker, target) ``rows`` and per-attacker transfer rows; with
    ``layout`` its CSV and JSON are written to the run's attack results (:meth:`RunLayout.attack_result`). ``run``:
    run_dir, task, synthetic, num_clients."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.insert(0, "key", key)
    mats = transfer_matrices(trows)
    summ = summarise(mats)
    per_attacker = frame.drop_duplicates("attacker")
    record = {
        "key": key,
        "label": spec.label,
        "attack": spec.to_dict(),
        "precision": precision,
        "crn_precision": crn_precision if spec.window else None,
        "batch_size": int(frame["batch_size"].max()),  # images a batch (at most the attack set)
        **run,
        "n": mats.n,
        "summary": dataclasses.asdict(summ),
        "grad_cosine_self": nanmean(align[mats.self_mask()]),
        "grad_cosine_benign": nanmean(align[~mats.self_mask()]),
        "attack_seconds_per_batch": float(per_attacker["attack_seconds_per_batch"].mean()),
        "fb_passes_per_image": int(per_attacker["fb_passes_per_image"].max()),  # K x steps for EOT-K
        "crn_passes_per_image": int(per_attacker["crn_passes_per_image"].iloc[0]),
        "start_source": dict(zip(per_attacker["attacker"].astype(str), per_attacker["start_source"], strict=True)),
        "matrices": {"attackers": list(mats.attackers), "asr": mats.asr, "asr_literal": mats.asr_literal,
                     "aetr": mats.aetr, "clean_acc": mats.clean_acc, "attack_acc": mats.attack_acc,
                     "grad_cosine": align, "n_correct": mats.n_correct, "n_aetr": mats.n_aetr},
        "sanity_warnings": warnings,
    }
    csv_path = json_path = None
    if layout is not None:
        csv_path, json_path = layout.attack_result(key, ".csv"), layout.attack_result(key, ".json")
        write_text(csv_path, frame.to_csv(index=False))
        record["csv"] = str(csv_path)
        try:
            write_json(json_path, record)
        except BaseException:  # a full disk: never a CSV without its JSON
            csv_path.unlink(missing_ok=True)
            raise
    return TransferResult(spec=spec, key=key, frame=frame, matrices=mats, summary=summ, alignment=align,
                          record=record, csv_path=csv_path, json_path=json_path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeError, ValueError) as e:
        log.warning("ignoring unreadable attack evaluation %s: %s", path, e)
        return None


def read_evaluation(run_dir: str | Path, key: str, spec: AttackSpec) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """(record, tidy table) stored under ``key`` in ``RUN/attacks/``, or None: absent, unreadable, or holding
    another spec than ``spec`` (the key is a hash prefix: the record must agree in full)."""
    layout = RunLayout(Path(run_dir))
    js, csv = layout.attack_result(key, ".json"), layout.attack_result(key, ".csv")
    if not (js.is_file() and csv.is_file()):
        return None
    record = _read_json(js)
    try:
        frame = pd.read_csv(csv)
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable attack evaluation %s: %s", csv, e)
        return None
    if not isinstance(record, dict) or record.get("attack") != json.loads(json.dumps(spec.to_dict())):
        return None
    return record, frame


def attack_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every attack evaluation record in ``RUN/attacks/`` (sorted by file name)."""
    out = []
    for p in RunLayout(Path(run_dir)).attack_summaries():
        rec = _read_json(p)
        if isinstance(rec, dict) and "summary" in rec and "matrices" in rec:
            out.append(rec)
    return out


def tidy(results: Iterable[TransferResult]) -> pd.DataFrame:
    """All results' rows in one tidy table."""
    frames = [r.frame for r in results]
    if not frames:
        raise ValueError("no results")
    return pd.concat(frames, ignore_index=True)
