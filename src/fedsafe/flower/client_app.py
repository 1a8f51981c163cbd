"""The fedsafe ClientApp (Flower Message API): one hospital's side of design §3.

On a ``train`` message of round t carrying the client's own copy w~_i (already noised and, under a defense,
adapted by the server):

1. the client hook (the CRN attacker of design §7) absorbs the received copy into the client's persistent
   state, kept in ``context.state`` across rounds (never in module globals);
2. E local epochs from w~_i with the configured loss (plain or Madry adversarial training);
3. the uplink: clip to C and add N(0, s_U^2), keyed by (seed, t, i);

all three by :func:`fedsafe.federation.protocol.client_update`, the very function the in-process simulator calls.

The reply carries the uplink (``arrays``), the training statistics and the accuracies of the received and the
trained model on the client's own test set (``metrics``), and the client hook's state (``client-state``: the run
directory checkpoints it, as the simulator does). An ``evaluate`` message carries the client's final model
(the last downlink, round T + 1): the client reports its accuracy. A ``query`` message asks which partition
this node holds.

The client index i is the node's ``partition-id`` (node config), never Flower's node id.
"""

from __future__ import annotations

import logging

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from ..federation.protocol import client_update, evaluate
from .app import FlowerRun, build_flower_run, partition_fingerprint, record_to_state, set_threads, state_to_record
from .messages import update_to_content

__all__ = ["app", "STATE_KEY"]

log = logging.getLogger(__name__)

STATE_KEY = "fedsafe.client-state"
"""Key of the client hook's state (an ArrayRecord) in ``context.state``."""

app = ClientApp()


def _node(context: Context, msg: Message | None = None) -> tuple[FlowerRun, int]:
    """This node's run (config, data, model, hooks, on this machine's device) and partition; refuses a message
    addressed to another one. The device is the node's ``device`` node config (``--device`` of ``fedsafe flower
    supernode``), else the config's ``train.device``."""
    set_threads(context.run_config)
    run = build_flower_run(str(context.run_config["fedsafe-config"]), str(context.node_config.get("device", "") or ""))
    i = run.partition(context.node_config)
    if msg is not None and int(msg.content["config"]["partition-id"]) != i:
        raise ValueError(f"message for partition {msg.content['config']['partition-id']} reached the node of "
                         f"partition {i}")
    return run, i


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Which partition this node holds, how many training images, and a fingerprint of its image ids."""
    run, i = _node(context)
    content = RecordDict({
        "metrics": MetricRecord({"partition-id": i, "num-examples": len(run.data.client_train[i])}),
        "info": ConfigRecord({"fingerprint": partition_fingerprint(run.data, i)}),
    })
    return Message(content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of the client's side of the protocol (:func:`fedsafe.federation.protocol.client_update`)."""
    run, i = _node(context, msg)
    t = int(msg.content["config"]["fedsafe-round"])
    device = run.spec.local.device
    received = record_to_state(msg.content["arrays"], device)
    # The client hook's state: from the server when it resumes a checkpointed run, else from context.state.
    if "client-state" in msg.content.array_records:
        state = record_to_state(msg.content["client-state"], device)
    elif STATE_KEY in context.state.array_records:
        state = record_to_state(context.state[STATE_KEY], device)
    else:
        state = {}
    u = client_update(run.model, received, train=run.data.client_train[i], test=run.data.client_test[i], spec=run.spec,
                      round_=t, client=i, client_state=state, hooks=run.hooks, augment_fn=run.augment_fn)
    context.state[STATE_KEY] = state_to_record(u.client_state)
    return Message(update_to_content(u, num_examples=len(run.data.client_train[i])), reply_to=msg)


@app.evaluate()
def evaluate_final(msg: Message, context: Context) -> Message:
    """The final downlink: this client's final model; reports its accuracy on the client's own test set."""
    run, i = _node(context, msg)
    final = record_to_state(msg.content["arrays"], run.spec.local.device)
    acc = evaluate(run.model, final, run.data.client_test[i], run.spec)
    return Message(RecordDict({"metrics": MetricRecord({"partition-id": i, "final-acc": acc})}), reply_to=msg)
