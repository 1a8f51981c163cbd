"""What travels between the fedsafe ServerApp and ClientApp: one client's update as a Flower ``RecordDict`` and
back. The round's logic is in :mod:`fedsafe.federation.protocol`; these functions only encode its values."""

from __future__ import annotations

import torch
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from ..federation.protocol import ClientUpdate
from .app import record_to_state, state_to_record

__all__ = ["downlink_content", "update_from_reply", "update_to_content"]


def downlink_content(state: dict[str, torch.Tensor], *, server_round: int, fedsafe_round: int, partition: int,
                     client_state: dict[str, torch.Tensor] | None = None) -> RecordDict:
    """A downlink message's content: the client's copy, the round and the partition it is for, and (when a
    checkpointed run resumes) the client hook's state to continue from."""
    content = RecordDict({"arrays": state_to_record(state), "config": ConfigRecord(
        {"server-round": server_round, "fedsafe-round": fedsafe_round, "partition-id": partition})})
    if client_state is not None:
        content["client-state"] = state_to_record(client_state)
    return content


def update_to_content(u: ClientUpdate, *, num_examples: int) -> RecordDict:
    """A ClientApp's training reply: the upload, the statistics, the accuracies (evaluation rounds) and the hook
    state."""
    metrics = MetricRecord({"partition-id": u.client, "num-examples": num_examples, "train-loss": float(u.loss),
                            "train-passes": int(u.passes), "train-seconds": float(u.seconds)})
    if u.local_acc is not None and u.received_acc is not None:
        metrics["local-acc"] = float(u.local_acc)
        metrics["received-acc"] = float(u.received_acc)
    return RecordDict({"arrays": state_to_record(u.upload), "metrics": metrics,
                       "client-state": state_to_record(u.client_state)})


def update_from_reply(msg: Message, *, round_: int, device: torch.device | str = "cpu") -> ClientUpdate:
    """Inverse of :func:`update_to_content` (the upload on the server's ``device``)."""
    m = msg.content["metrics"]
    state = record_to_state(msg.content["client-state"]) if "client-state" in msg.content.array_records else {}
    return ClientUpdate(client=int(m["partition-id"]), round_=round_,
                        upload=record_to_state(msg.content["arrays"], device), client_state=state,
                        loss=float(m["train-loss"]), passes=int(m["train-passes"]), seconds=float(m["train-seconds"]),
                        local_acc=float(m["local-acc"]) if "local-acc" in m else None,
                        received_acc=float(m["received-acc"]) if "received-acc" in m else None)
