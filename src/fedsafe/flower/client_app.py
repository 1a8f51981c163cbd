"""The fedsafe ClientApp (Flower Message API): one hospital's side of SPEC section 3.

On a ``train`` message of round t carrying the client's own copy w~_i (already noised and, under a defence,
adapted by the server):

1. the client hook (the CRN attacker of SPEC section 7) absorbs the received copy into the client's persistent
   state, kept in ``context.state`` across rounds (never in module globals);
2. E local epochs from w~_i with the configured loss (plain or Madry adversarial training), exactly
   :func:`fedsafe.federation.client.local_train` as in the in-process simulator, keyed by (seed, t, i);
3. the uplink: clip to C and add N(0, s_U^2), :func:`fedsafe.federation.round.uplink`, keyed by (seed, t, i).

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

from ..federation.client import accuracy, local_train
from ..federation.round import uplink
from .app import FlowerRun, load_run, partition_fingerprint, record_to_state, set_threads, state_to_record

__all__ = ["app", "STATE_KEY"]

log = logging.getLogger(__name__)

STATE_KEY = "fedsafe.client-state"
"""Key of the client hook's state (an ArrayRecord) in ``context.state``."""

app = ClientApp()


def _acc(run, state, split) -> float:
    run.model.load_state_dict(state)
    s = run.spec
    return accuracy(run.model, split.x, split.y, batch_size=s.eval_batch_size, precision=s.local.precision,
                    channels_last=s.local.channels_last)


def _should_eval(spec, round_: int) -> bool:
    return round_ == spec.rounds or (spec.eval_every > 0 and round_ % spec.eval_every == 0)


def _node(context: Context, msg: Message | None = None) -> tuple[FlowerRun, int]:
    """This node's run (config, data, model, hooks) and partition; refuses a message addressed to another one."""
    set_threads(context.run_config)
    run = load_run(str(context.run_config["fedsafe-config"]))
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
    """One round of local training from the received copy (module docstring)."""
    run, i = _node(context, msg)
    t = int(msg.content["config"]["fedsafe-round"])
    received = record_to_state(msg.content["arrays"])
    s, hooks = run.spec, run.hooks

    # The client hook's state: from context.state, or from the server when it resumes a checkpointed run.
    if "client-state" in msg.content.array_records:
        state = record_to_state(msg.content["client-state"])
    elif STATE_KEY in context.state.array_records:
        state = record_to_state(context.state[STATE_KEY])
    else:
        state = {}
    if hooks.client is not None:
        state = hooks.client.on_receive(received, round_=t, client=i, client_state=state)
    context.state[STATE_KEY] = state_to_record(state)

    train_split = run.data.client_train[i]
    new_state, st = local_train(run.model, received, train_split.x, train_split.y, s.local, seed=s.seed, round_=t,
                                client=i, loss_fn=hooks.loss_fn, augment_fn=run.augment_fn)
    metrics = MetricRecord({"partition-id": i, "num-examples": len(train_split), "train-loss": float(st.loss),
                            "train-passes": int(st.passes), "train-seconds": float(st.seconds)})
    if _should_eval(s, t):
        test = run.data.client_test[i]
        metrics["local-acc"] = _acc(run, new_state, test)
        metrics["received-acc"] = _acc(run, received, test)
    up = uplink(new_state, clip=s.uplink_clip, std=s.uplink_noise, seed=s.seed, round_=t, client=i)
    content = RecordDict({"arrays": state_to_record(up), "metrics": metrics, "client-state": state_to_record(state)})
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The final downlink: this client's final model; reports its accuracy on the client's own test set."""
    run, i = _node(context, msg)
    final = record_to_state(msg.content["arrays"])
    acc = _acc(run, final, run.data.client_test[i])
    return Message(RecordDict({"metrics": MetricRecord({"partition-id": i, "final-acc": acc})}), reply_to=msg)
