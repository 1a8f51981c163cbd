"""Why does a federation stay at the majority class? Measurements, round by round, of one training run.

    python benchmarks/diag_learning.py --task meningioma --seed 2 [--set train.local_epochs=1 ...] --out DIR

Trains one federation exactly as ``fedsafe train`` does (the same composition root), with two observing hooks that
change nothing in the training:
  * on receipt (every client, every round) and on upload (every client, every round), the model is run on a fixed
    probe (the global test set) and we record its accuracy, the share of the probe it predicts as the majority
    class, and, for every ReLU layer of the classifier head, how many units are *dead* (zero on every probe
    image);
  * the label counts of every client's training set.
It writes ``DIR/diag.json`` (one row per round, client and moment) and prints a compact table. Timings are not the
point: it runs on whatever machine it is given.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from fedsafe.build import build_hooks, federation_spec, model_factory, prepare_data
from fedsafe.config import load_config
from fedsafe.federation.simulator import Simulator


def relu_dead_units(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, tuple[int, int]], torch.Tensor]:
    """(name -> (dead units, units) for every ReLU of ``model`` on a 2-D activation (the linear head), logits)."""
    acts: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ReLU):
            handles.append(mod.register_forward_hook(
                lambda m, i, o, name=name: acts.__setitem__(name, o.detach().float().clone())))
    try:
        with torch.inference_mode():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    out = {name: (int((a.amax(0) <= 0).sum()), int(a.shape[1])) for name, a in acts.items() if a.dim() == 2}
    return out, logits


class Probe:
    """Observes a model state on the probe set; the training is unchanged (the hooks return what they get)."""

    def __init__(self, make, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.x, self.y = make(), x, y
        self.majority = int(torch.bincount(y).argmax())
        self.rows: list[dict] = []

    def observe(self, state, *, moment: str, round_: int, client: int) -> None:
        self.model.load_state_dict(state)
        self.model.eval()
        dead, logits = relu_dead_units(self.model, self.x)
        pred = logits.argmax(1)
        self.rows.append({"round": round_, "client": client, "moment": moment,
                          "acc": float((pred == self.y).float().mean()),
                          "pred_majority": float((pred == self.majority).float().mean()),
                          "dead": {k: list(v) for k, v in dead.items()}})


class ReceiveProbe:
    name = "diag-receive"

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def on_receive(self, received, *, round_, client, client_state):
        self.probe.observe(received, moment="received", round_=round_, client=client)
        return client_state


class UploadProbe:
    name = "diag-upload"

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def on_upload(self, upload, *, round_, client):
        self.probe.observe(upload, moment="upload", round_=round_, client=client)
        return dict(upload)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="meningioma")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = load_config(profile=a.profile, overrides=[f"task.name={a.task}", f"seed={a.seed}", *a.overrides])
    if cfg.crn.enabled:
        raise SystemExit("diag_learning observes with the client hook: run it with crn.enabled=false")
    data = prepare_data(cfg)
    spec = federation_spec(cfg, data)
    make = model_factory(cfg, data)
    probe = Probe(make, data.global_test.x, data.global_test.y)
    hooks = replace(build_hooks(cfg, data, spec), client=ReceiveProbe(probe), upload=UploadProbe(probe))
    labels = [torch.bincount(s.y, minlength=len(data.class_names)).tolist() for s in data.client_train]
    t0 = time.perf_counter()
    sim = Simulator(spec=spec, data=data, model_factory=make, hooks=hooks, store=None)
    res = sim.run()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"task": a.task, "seed": a.seed, "profile": a.profile, "overrides": a.overrides,
           "class_names": list(data.class_names), "client_train_labels": labels,
           "probe_majority_rate": float(torch.bincount(data.global_test.y).max()) / len(data.global_test.y),
           "global_acc": [m.get("global_acc") for m in res.metrics], "seconds": time.perf_counter() - t0,
           "threads": torch.get_num_threads(), "rows": probe.rows}
    (out / "diag.json").write_text(json.dumps(doc, indent=1))
    print(f"{a.task} seed {a.seed} {a.overrides}: client label counts {labels}; probe majority "
          f"{doc['probe_majority_rate']:.3f}; {doc['seconds']:.0f} s")
    for r in probe.rows:
        if r["moment"] == "received" and r["client"] == 0 or r["moment"] == "upload":
            dead = " ".join(f"{d}/{n}" for d, n in r["dead"].values())
            print(f"round {r['round']:2d} {r['moment']:8s} client {r['client']}: acc {r['acc']:.3f} "
                  f"majority-share {r['pred_majority']:.2f} dead {dead}")


if __name__ == "__main__":
    main()
