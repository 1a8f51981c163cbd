"""Membership inference on a finished run (design §13): both views, both attacks, on a tiny two-client federation made
to overfit (16 noisy images a client, 60 epochs of a small MLP); the control whose "members" are held-out images
gives AUC ~0.5; the result is cached by its settings and read back without loading the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedsafe.audit.mia import MiaSettings, membership_audit, run_membership, train_shadows
from fedsafe.config import config_hash, load_config, to_yaml
from fedsafe.data.types import DataReport
from fedsafe.evaluation.run_context import load_context
from fedsafe.federation.federated_data import FederatedData, Split
from fedsafe.federation.federation_spec import FederationSpec, LocalSpec
from fedsafe.federation.simulator import Simulator
from fedsafe.metrics.membership import per_example_loss
from fedsafe.runs import open_run
from fedsafe.runs.atomic import write_json, write_text

ROUNDS, EPOCHS, LR = 4, 15, 0.01
SETTINGS = MiaSettings(shadows=2, max_shadow_epochs=20)


def _split(n: int, seed: int) -> Split:
    """Noisy images, class 1 with a faint square: learnable a little, memorisable a lot."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.6
    x[y == 1, :, 5:11, 5:11] += 0.15
    return Split(x=x.clamp(0, 1), y=y, ids=tuple(f"m{seed}:{i}" for i in range(n)))


def _data() -> FederatedData:
    return FederatedData(task="tiny-overfit", class_names=("a", "b"), synthetic=True,
                         client_train=tuple(_split(16, 100 + i) for i in range(2)),
                         client_test=tuple(_split(60, 200 + i) for i in range(2)), server=_split(40, 300),
                         global_test=_split(120, 400), report=DataReport(task="tiny", source="tests", synthetic=True))


def _mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 2))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A complete run (summary.json written) with downlink noise 0.01, its config matching its training."""
    cfg = load_config(overrides=[f"train.rounds={ROUNDS}", f"train.local_epochs={EPOCHS}", f"train.lr={LR}",
                                 "train.augment=false", "train.batch_size=8", "train.precision=fp32",
                                 "train.channels_last=false", "federation.keep_received_rounds=2",
                                 "federation.downlink_noise=0.01"])
    data = _data()
    store = open_run(tmp_path_factory.mktemp("mia-run"), config_hash=config_hash(cfg)).store
    write_text(store.layout.config, to_yaml(cfg))
    write_json(store.layout.splits, data.split_ids())
    local = LocalSpec(epochs=EPOCHS, batch_size=8, optimizer="adam", lr=LR, grad_clip=20.0, augment=False,
                      precision="fp32")
    spec = FederationSpec(rounds=ROUNDS, seed=7, local=local, downlink_noise=0.01, keep_received=2, eval_every=0)
    Simulator(spec=spec, data=data, model_factory=_mlp, store=store).run()
    store.write_summary({"learned": True, "global_acc": 0.85})
    return store.root


def context(run_dir):
    return load_context(open_run(run_dir), data=_data(), model_factory=_mlp, device="cpu")


def test_an_overfitted_federation_leaks_membership_in_both_views(run_dir):
    r = membership_audit(context(run_dir), SETTINGS, cache=False)
    assert len(r["server"]["per_client"]) == 2 and [(p["attacker"], p["victim"]) for p in r["insider"]["pairs"]] == \
        [(0, 1), (1, 0)]
    for view in ("server", "insider"):
        assert r[view]["mean"]["loss"]["auc"] > 0.75, (view, r[view]["mean"])
        assert r[view]["mean"]["lira"]["auc"] > 0.65, (view, r[view]["mean"])
    one = r["server"]["per_client"][0]["lira"]
    assert one["n_members"] == 16 and one["n_nonmembers"] == 120
    # 120 non-members resolve 1% FPR (one false positive) but not 0.1%: NaN (null), and the notes say why
    assert one["tpr_at_1pct_fpr"] is not None and one["tpr_at_0_1pct_fpr"] is None
    assert any("0.1% FPR not resolvable: 120 non-members" in n for n in r["notes"])
    assert r["shadow_epochs"] == 20 and r["shadows_trained"] == 2 * 3 and r["global_std"]  # capped at 20 < 4 x 15
    assert "min(T x E = 4 x 15, cap 20)" in r["budget"]


def test_held_out_members_give_chance_auc(run_dir):
    """The control: the "members" are the clients' own test sets, which no model trained on."""
    ctx = context(run_dir)
    r = membership_audit(ctx, SETTINGS, members=lambda i: ctx.data.client_test[i])
    for view in ("server", "insider"):
        for attack in ("loss", "lira"):
            assert abs(r[view]["mean"][attack]["auc"] - 0.5) < 0.12, (view, attack, r[view]["mean"])
    assert not r["cached"] and not (run_dir / "audit").is_dir()  # a control is never cached



def test_the_insider_may_average_its_received_copies(run_dir):
    r = membership_audit(context(run_dir), MiaSettings(shadows=2, max_shadow_epochs=20, insider_rounds=2),
                         cache=False)
    assert "copies of the last 2 rounds" in r["insider_models"]
    assert r["insider"]["mean"]["loss"]["auc"] > 0.75  # the copies of earlier rounds also saw the members


def test_the_result_is_cached_by_its_settings_and_read_back_without_loading_the_run(run_dir):
    first = membership_audit(context(run_dir), SETTINGS)
    files = sorted((run_dir / "audit").glob("mia-*.json"))
    assert not first["cached"] and len(files) == 1
    again = membership_audit(context(run_dir), SETTINGS)
    assert again["cached"] and {k: v for k, v in again.items() if k != "cached"} == \
        {k: v for k, v in first.items() if k != "cached"}
    # run_membership reads the cache from the directory alone (loading this run from its config would fail: its
    # data is not the config's)
    via_dir = run_membership(run_dir, SETTINGS)
    assert via_dir["cached"] and via_dir["server"] == first["server"]
    with pytest.raises(ValueError, match="test set differs|client test sets"):
        run_membership(run_dir, MiaSettings(shadows=3))  # not cached: it loads the run, whose data is the config's
    assert json.loads(files[0].read_text())["settings"]["shadows"] == 2


def test_shadows_are_reproducible_and_differ_from_each_other(run_dir):
    ctx = context(run_dir)
    a = train_shadows(ctx, ctx.data.server, settings=SETTINGS, view=0)
    b = train_shadows(ctx, ctx.data.server, settings=SETTINGS, view=0)
    wa, wb = [m[1].weight.detach() for m in a], [m[1].weight.detach() for m in b]
    assert all(torch.equal(x, y) for x, y in zip(wa, wb, strict=True))  # keyed (seed, "shadow", s, view)
    assert not torch.equal(wa[0], wa[1])  # each shadow its own initialisation and batch order
    with pytest.raises(ValueError, match="at least 2 shadow"):
        MiaSettings(shadows=1)


def _delong_by_pairs(parts):
    """(low, high) of the mean AUC of ``parts`` [(members, non-members)] sharing the non-members, counted pair by
    pair (each part's members are their own images)."""
    def h(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0
    k, z = len(parts), 1.959963984540054
    var, shared, aucs = 0.0, 0.0, []
    for pos, neg in parts:
        v10 = np.array([np.mean([h(p, q) for q in neg]) for p in pos]) / k
        shared = shared + np.array([np.mean([h(p, q) for p in pos]) for q in neg]) / k
        var += v10.var(ddof=1) / len(pos)
        aucs.append(k * v10.mean())
    var += shared.var(ddof=1) / len(shared)
    return np.mean(aucs) - z * np.sqrt(var), np.mean(aucs) + z * np.sqrt(var)


def test_membership_auc_intervals_equal_delong_by_hand(run_dir):
    ctx = context(run_dir)
    r = membership_audit(ctx, SETTINGS, cache=False)
    glob = _mlp()
    glob.load_state_dict(ctx.store.load_global(ROUNDS))
    data = _data()

    def scores(s):
        return (-per_example_loss(glob, s.x, s.y)).numpy()

    neg = scores(data.global_test)
    expected = _delong_by_pairs([(scores(data.client_train[i]), neg) for i in range(2)])
    assert r["server"]["mean"]["loss"]["auc_ci"] == pytest.approx(expected, abs=1e-9)
    assert r["server"]["per_client"][1]["loss"]["auc_ci"] == pytest.approx(
        _delong_by_pairs([(scores(data.client_train[1]), neg)]), abs=1e-9)
    for view in ("server", "insider"):
        for attack in ("loss", "lira"):
            lo, hi = r[view]["mean"][attack]["auc_ci"]
            assert lo <= r[view]["mean"][attack]["auc"] <= hi and hi - lo > 0.01
    assert "DeLong" in r["intervals"] and "shadow" in r["intervals"]
