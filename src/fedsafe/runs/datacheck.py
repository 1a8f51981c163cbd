"""Is this the data the run trained on? The check a resume, an attack and an audit make before they use the data.

The run's record is its ``data_fingerprint.json`` (:mod:`fedsafe.runs.fingerprint`); a run written before
fingerprints has only its ``splits.json`` (the image ids of every set), which is compared instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import RunDataChanged, RunFileError
from .fingerprint import data_changes
from .store import RunStore

__all__ = ["check_data"]


def _trained_on(store: RunStore) -> str:
    if store.is_complete():
        return "the run was trained"
    try:
        ck = store.load_checkpoint()
    except (RunFileError, ValueError):
        ck = None
    return f"round {ck.round}" if ck is not None else "the run started"


def check_data(store: RunStore, fingerprint: Mapping[str, Any], *, splits: Mapping[str, Any], doing: str) -> bool:
    """Refuse (RunDataChanged, saying what changed) data other than the run's: its recorded fingerprint, or for a
    run written before fingerprints, its ``splits.json``. ``doing``: what is refused ("resume", "attack").
    Returns whether the run records a fingerprint. Nothing is checked before a round was trained."""
    recorded = store.json_state(store.layout.data_fingerprint) == "ok"
    if not store.trained() and not store.is_complete():
        return recorded
    if recorded:
        changed = data_changes(store.read_json(store.layout.data_fingerprint), fingerprint)
        where = store.layout.data_fingerprint
    else:
        same = store.read_json(store.layout.splits) == json.loads(json.dumps(dict(splits)))
        changed = None if same else "the image ids of its sets differ from the run's"
        where = store.layout.splits
    if changed:
        raise RunDataChanged(f"{store.root}: data changed since {_trained_on(store)}: {changed}; refusing to {doing} "
                             f"the run on other data (its record: {where})")
    return recorded
