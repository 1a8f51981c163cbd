"""One federated round (design §3), written once: both engines (the in-process simulator and the Flower
ServerApp / ClientApp) call these functions in this order and only move their inputs and outputs around.

Round t:

1. :func:`server_downlink` (server): client i's own copy w_t + n_i (keyed by (seed, t, i)), passed through the
   server hook's ``adapt_downlink`` (a defense may adapt it);
2. :func:`client_update` (client i): the client hook (an attacker) sees the received copy and updates its
   persistent state; E local epochs from the copy; accuracy of the received and the trained model on the client's
   own test set (evaluation rounds); the uplink: clip to C, add N(0, s_U^2 I) (keyed by (seed, t, i)); an upload
   hook (a poisoning client, a test's fault) may replace what is sent;
3. :func:`server_aggregate` (server): every upload is screened (a non-finite one is rejected, an outlying norm
   flagged / clipped / rejected as configured: by default rejected above ``DEFAULT_NORM_FACTOR`` x the median), the
   accepted ones are aggregated (FedAvg re-weighted over them, or a robust rule), then the server hook's
   ``after_aggregation`` runs. A round whose aggregate is not finite, or explodes (its update norm above
   max(norm_factor, ``DEFAULT_NORM_FACTOR``) x the median upload's: only a flagged upload or a screen turned off
   lets that happen), stops the run with an error naming the round, the clients and the cause: a broken global
   model is never carried on to the next round;
4. :func:`round_record`: the round's metrics row, the same keys on both engines.

After round T, :func:`server_downlink` keyed as round T + 1 gives every client its final model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .aggregators import aggregate_with
from .client import accuracy, local_train
from .federated_data import Split
from .federation_spec import DEFAULT_NORM_FACTOR, FederationSpec
from .hooks import ClientHook, Hooks, ServerHook
from .round import downlink_copy, uplink
from .screening import Screening, screen_uploads
from .state import global_norm, non_finite

__all__ = ["Aggregation", "ClientUpdate", "add_cost", "client_update", "evaluate", "round_record",
           "server_aggregate", "server_downlink"]

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def add_cost(row: dict[str, object], cost: Mapping[str, float]) -> None:
    """Add a hook's cost stats to a metrics row as ``defense_<key>`` (summed over the calls of the round)."""
    for k, v in cost.items():
        key = f"defense_{k}"
        row[key] = float(row.get(key, 0.0)) + float(v)  # type: ignore[arg-type]


def evaluate(model: nn.Module, state: Mapping[str, torch.Tensor], split: Split, spec: FederationSpec) -> float:
    """Clean accuracy of ``state`` on ``split`` (the scratch ``model``'s weights are overwritten)."""
    model.load_state_dict(state)
    return accuracy(model, split.x, split.y, batch_size=spec.eval_batch_size, precision=spec.local.precision,
                    channels_last=spec.local.channels_last)


def server_downlink(global_state: Mapping[str, torch.Tensor], *, spec: FederationSpec, round_: int,
                    num_clients: int, server_hook: ServerHook | None, row: dict[str, object]) -> list[StateDict]:
    """Every client's copy of round ``round_``: w_t + n_i, then the defense's adaptation (its cost into ``row``)."""
    out = []
    for i in range(num_clients):
        copy = downlink_copy(global_state, std=spec.downlink_noise, seed=spec.seed, round_=round_, client=i)
        if server_hook is not None:
            copy, cost = server_hook.adapt_downlink(global_state, copy, round_=round_, client=i)
            add_cost(row, cost)
        out.append(copy)
    return out


@dataclass(frozen=True)
class ClientUpdate:
    """What client ``client`` sends back after round ``round_``: its upload, its hook state and statistics."""

    client: int
    round_: int
    upload: StateDict
    client_state: StateDict
    loss: float
    passes: int
    seconds: float
    local_acc: float | None = None
    received_acc: float | None = None


def client_update(model: nn.Module, received: Mapping[str, torch.Tensor], *, train: Split, test: Split,
                  spec: FederationSpec, round_: int, client: int, client_state: Mapping[str, torch.Tensor],
                  hooks: Hooks, augment_fn: AugmentFn | None = None) -> ClientUpdate:
    """Client ``client``'s side of round ``round_`` (module docstring, step 2).

    ``model`` is the client's scratch instance (its weights are overwritten). ``client_state`` is the client hook's
    persistent state from the previous round (empty at first); the new one is returned.
    """
    state: StateDict = dict(client_state)
    hook: ClientHook | None = hooks.client
    if hook is not None:
        state = hook.on_receive(received, round_=round_, client=client, client_state=state)
    new_state, st = local_train(model, received, train.x, train.y, spec.local, seed=spec.seed, round_=round_,
                                client=client, loss_fn=hooks.loss_fn, augment_fn=augment_fn)
    local_acc = received_acc = None
    if spec.should_evaluate(round_):
        local_acc = evaluate(model, new_state, test, spec)
        received_acc = evaluate(model, received, test, spec)
    up = uplink(new_state, clip=spec.uplink_clip, std=spec.uplink_noise, seed=spec.seed, round_=round_,
                client=client)
    if hooks.upload is not None:
        up = hooks.upload.on_upload(up, round_=round_, client=client)
    return ClientUpdate(client=client, round_=round_, upload=up, client_state=state, loss=st.loss,
                        passes=st.passes, seconds=st.seconds, local_acc=local_acc, received_acc=received_acc)


@dataclass(frozen=True)
class Aggregation:
    """The server's result of one round: the new global model and what screening and aggregation did."""

    global_state: StateDict
    accepted: tuple[int, ...]
    rejected: tuple[dict[str, object], ...] = ()  # {"client", "reason"}
    flagged: tuple[dict[str, object], ...] = ()
    info: dict[str, object] = field(default_factory=dict)  # the aggregator's (selected / trimmed clients)


def server_aggregate(uploads: Sequence[Mapping[str, torch.Tensor]], *, sizes: Sequence[int], spec: FederationSpec,
                     round_: int, server_hook: ServerHook | None, row: dict[str, object],
                     reference: Mapping[str, torch.Tensor] | None = None) -> Aggregation:
    """Screen, aggregate and defend (module docstring, step 3). ``reference`` is the global model the round started
    from: the norm screen measures each update against it. A rejected upload is named in the log and the result;
    the others are re-weighted. Raises ValueError naming the round when no upload is acceptable, and naming the
    round, the clients and the cause when the aggregate is not finite or explodes (module docstring, step 3)."""
    try:
        screened = screen_uploads(uploads, reference=reference, norm_factor=spec.norm_factor,
                                  action=spec.norm_action)
    except ValueError as e:
        clients = _names(range(len(uploads)))
        raise ValueError(f"round {round_}: {str(e).rstrip('.')} (clients {clients}){_start_hint(reference)}") from None
    for r in screened.rejected:
        log.warning("round %d: rejected the upload of client %s: %s", round_, r["client"], r["reason"])
    for f in screened.flagged:
        log.warning("round %d: flagged the upload of client %s: %s", round_, f["client"], f["reason"])
    accepted = list(screened.accepted)
    states = [screened.uploads[i] for i in accepted]
    weights = [float(sizes[i]) for i in accepted] if spec.weighted else None
    global_state, info = aggregate_with(spec.aggregator, states, weights, trim_fraction=spec.trim_fraction,
                                        byzantine=spec.byzantine, multi_krum_m=spec.multi_krum_m)
    _check_aggregate(global_state, screened, accepted, spec=spec, round_=round_, reference=reference)
    if "selected" in info:  # positions among the accepted uploads -> client indices
        info = {**info, "selected": [accepted[int(k)] for k in info["selected"]]}  # type: ignore[union-attr]
    if server_hook is not None:
        global_state, cost = server_hook.after_aggregation(global_state, round_=round_)
        add_cost(row, cost)
    return Aggregation(global_state=dict(global_state), accepted=tuple(accepted),
                       rejected=tuple(screened.rejected), flagged=tuple(screened.flagged), info=dict(info))


def _names(clients: Sequence[int] | range) -> str:
    return ", ".join(str(c) for c in clients)


def _start_hint(reference: Mapping[str, torch.Tensor] | None) -> str:
    """What the global model the round started from looks like (a model already blown up trains into NaN)."""
    if reference is None:
        return ""
    top = max((float(v.detach().abs().max()) for v in reference.values() if v.is_floating_point() and v.numel()),
              default=0.0)
    return f"; the global model this round started from has entries up to |w| = {top:.3g}"


def _check_aggregate(state: Mapping[str, torch.Tensor], screened: Screening, accepted: Sequence[int], *,
                     spec: FederationSpec, round_: int, reference: Mapping[str, torch.Tensor] | None) -> None:
    """Raise ValueError when the aggregate is not finite or its update norm exceeds max(norm_factor,
    ``DEFAULT_NORM_FACTOR``) x the median upload's, naming the round, the accepted clients and the cause: the
    accepted uploads above that bound (else the largest), with their norms and what screening said of them."""
    floats = [k for k, v in state.items() if v.is_floating_point()]
    bad = list(non_finite(state))
    median = screened.median_norm
    bound = max(spec.norm_factor or DEFAULT_NORM_FACTOR, DEFAULT_NORM_FACTOR) * median
    norm = math.nan
    if not bad and median > 0:
        norm = global_norm({k: state[k].detach().double() - (0.0 if reference is None else reference[k].double())
                            for k in floats})
    if not bad and not norm > bound:
        return
    what = (f"is not finite (in {bad[0]})" if bad else
            f"exploded: its update norm {norm:.3g} is {norm / median:.3g} x the median upload's {median:.3g}")
    causes = [i for i in accepted if screened.norms[i] > bound] or [max(accepted, key=lambda i: screened.norms[i])]
    said = {int(f["client"]): f"flagged: {f['reason']}" for f in screened.flagged}  # type: ignore[call-overload]
    named = "; ".join(f"client {i}'s update norm {screened.norms[i]:.3g} ({screened.norms[i] / median:.3g} x the "
                      f"median{', ' + said[i] if i in said else ''})" if median > 0 else
                      f"client {i}'s update norm {screened.norms[i]:.3g}" for i in causes)
    raise ValueError(f"round {round_}: the aggregate of clients {_names(accepted)} {what}; cause: {named}. Screen "
                     "such uploads out: federation.norm_action reject (the default) or clip, with a "
                     "federation.norm_factor no honest client reaches")


def round_record(row: dict[str, object], updates: Sequence[ClientUpdate], agg: Aggregation, *,
                 global_acc: float | None, started: float) -> dict[str, object]:
    """Complete round ``row`` (which holds ``round`` and the hooks' costs) with the clients' statistics, what the
    server rejected or flagged, the evaluation (when ``global_acc`` is not None) and the wall time."""
    row.update(train_loss=[u.loss for u in updates], train_passes=int(sum(u.passes for u in updates)),
               train_seconds=float(sum(u.seconds for u in updates)))
    if agg.rejected:
        row["rejected_uploads"] = [dict(r) for r in agg.rejected]
    if agg.flagged:
        row["flagged_uploads"] = [dict(f) for f in agg.flagged]
    if agg.info:
        row["aggregation"] = dict(agg.info)
    if global_acc is not None:
        row["client_local_acc"] = [u.local_acc for u in updates]
        row["client_received_acc"] = [u.received_acc for u in updates]
        row["global_acc"] = global_acc
    row["round_seconds"] = time.perf_counter() - started
    return row
