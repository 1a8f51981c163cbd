"""Transfer evaluation from a run directory, on a tiny 3-client federation trained with online CRN."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fedsafe.attacks import pgd, predict, project_start, uniform_start
from fedsafe.attacks.crn import crn_replay
from fedsafe.attacks.crn_hook import CrnClientHook, crn_state_from
from fedsafe.attacks.iterative import iterative_attack
from fedsafe.attacks.spec import AttackSpec, Start, parse_start, sweep
from fedsafe.config import config_hash, load_config, to_yaml
from fedsafe.evaluation.results import tidy
from fedsafe.evaluation.run_context import load_context
from fedsafe.evaluation.start_resolution import start_delta
from fedsafe.evaluation.transfer_evaluation import evaluate_transfer
from fedsafe.federation.federation_spec import LocalSpec
from fedsafe.federation.hooks import Hooks
from fedsafe.federation.simulator import Simulator
from fedsafe.metrics import summarise, transfer_matrices, transfer_row
from fedsafe.runs import open_run
from fedsafe.runs.atomic import write_json, write_text
from fedsafe.seeding import torch_generator

_spec = importlib.util.spec_from_file_location("_tiny_fed", Path(__file__).parents[1] / "federation" / "_tiny.py")
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)

ROUNDS, KEEP, EPS = 4, 3, 0.05
CRN = dict(windows=(1, 3), eps=EPS, steps=2)  # alpha: eps / steps


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A complete run whose models learned the task (100% clean accuracy): config.yaml (matching the CRN
    settings), splits.json, final models, checkpoint."""
    data = _tiny.tiny_data()
    cfg = load_config(overrides=[f"train.rounds={ROUNDS}", "train.local_epochs=3", "crn.enabled=true",
                                 "crn.windows=[1,3]", f"crn.eps={EPS}", "crn.steps=2",
                                 f"federation.keep_received_rounds={KEEP}"])
    store = open_run(tmp_path_factory.mktemp("transfer-run"), config_hash=config_hash(cfg)).store
    rd = store.layout
    write_text(rd.config, to_yaml(cfg))
    write_json(rd.splits, data.split_ids())
    hook = CrnClientHook(model_factory=_tiny.tiny_model, attack_sets=[s.x for s in data.client_test],
                         total_rounds=ROUNDS, **CRN)
    local = LocalSpec(epochs=3, batch_size=8, optimizer="adam", lr=5e-3, grad_clip=20.0, augment=False,
                      precision="fp32")
    Simulator(spec=_tiny.tiny_spec(rounds=ROUNDS, keep_received=KEEP, local=local), data=data,
              model_factory=_tiny.tiny_model, hooks=Hooks(client=hook), store=store).run()
    return rd.root


def context(run_dir):
    return load_context(open_run(run_dir), data=_tiny.tiny_data(), model_factory=_tiny.tiny_model)


METRICS = ["clean_acc", "attack_acc", "asr", "asr_literal", "aetr", "n_correct", "n_aetr", "grad_cosine"]


def test_one_row_per_attacker_and_target_and_self_asr_matches_a_hand_made_pgd(run_dir):
    # Arrange
    ctx = context(run_dir)
    spec = AttackSpec(attack="pgd", eps=0.2, alpha=0.05, steps=3, start="random", seed=5)
    # Act
    (res,) = evaluate_transfer(ctx, spec, write=False, sanity=False)
    # Assert: the shape of the tidy table
    f = res.frame
    cells = sorted(zip(f.attacker, f.target, strict=True))
    assert len(f) == 9 and cells == [(m, c) for m in range(3) for c in range(3)]
    assert (f.self == (f.attacker == f.target)).all()
    assert set(f.start_source) == {"random"} and (f.fb_passes_per_image == 3).all()
    # ... and every cell of attacker 1 against an independent recomputation
    x, y, models = ctx.data.client_test[1].x, ctx.data.client_test[1].y, ctx.models
    start = uniform_start(x, 0.2, torch_generator(5, "attack-start", 1))
    x_adv = pgd(models[1], x, eps=0.2, alpha=0.05, steps=3, start=start).x_adv
    clean = np.stack([predict(m, x).numpy() for m in models])
    adv = np.stack([predict(m, x_adv).numpy() for m in models])
    expected = transfer_row(clean, adv, y.numpy(), attacker=1)
    got = f[f.attacker == 1].sort_values("target")
    np.testing.assert_array_equal(got.asr.to_numpy(), expected.asr)
    np.testing.assert_array_equal(got.aetr.to_numpy(), expected.aetr)
    np.testing.assert_array_equal(got.clean_acc.to_numpy(), expected.clean_acc)
    assert expected.asr[1] > 0 and not np.isnan(expected.aetr).all()  # the attack does something here
    np.testing.assert_equal(dataclasses.asdict(res.summary), dataclasses.asdict(summarise(res.matrices)))


def test_crn_start_uses_the_online_buffer_when_settings_match_and_replays_otherwise(run_dir):
    ctx = context(run_dir)
    online = evaluate_transfer(ctx, AttackSpec(attack="pgd", eps=EPS, alpha=0.001, steps=1, start="crn3"),
                               write=False, sanity=False)[0]
    assert set(online.frame.start_source) == {"crn-online"}
    assert (online.frame.crn_passes_per_image == 3 * 2).all()
    # Forget the online buffers: the same attack from replayed CRN gives the very same numbers
    replayed = evaluate_transfer(dataclasses.replace(context(run_dir), client_states=None),
                                 AttackSpec(attack="pgd", eps=EPS, alpha=0.001, steps=1, start="crn3"),
                                 write=False, sanity=False)[0]
    assert set(replayed.frame.start_source) == {"crn-replayed"}
    pd.testing.assert_frame_equal(online.frame[METRICS], replayed.frame[METRICS])
    # Another eps than the run's: replayed at that eps
    other = evaluate_transfer(ctx, AttackSpec(attack="fgsm", eps=0.03, start=Start.crn(1, eps=0.03)), write=False,
                              sanity=False)[0]
    assert set(other.frame.start_source) == {"crn-replayed"}


def test_the_final_model_control_runs_the_same_centred_loop_on_the_final_model_alone(run_dir):
    ctx = context(run_dir)
    x, model = ctx.data.client_test[1].x, ctx.models[1]
    spec = AttackSpec(attack="pgd", eps=EPS, alpha=0.001, steps=1, start=Start.crn(3, eps=EPS, final=True))
    delta, source, info = start_delta(ctx, spec, 1, x)
    assert source == "crn-final-model" and info["crn_passes_per_image"] == 3 * 2  # R x j steps, at attack time
    # R rounds of j centred steps of eps/j, every round on the final model: the CRN loop with one model
    torch.testing.assert_close(delta, crn_replay([model] * 3, x, eps=EPS, steps=2, centre_grad=True))
    # ... which is the centred step loop of R x j steps from zero on that model (up to the float round trip of
    # x + delta between rounds, which may flip the sign of a gradient that is ~0)
    loop = iterative_attack(model, x, "pred", eps=EPS, alpha=EPS / 2, steps=3 * 2, centre_grad=True).delta
    assert (delta - loop).abs().gt(1e-6).float().mean() < 0.01
    received, src, _ = start_delta(ctx, spec.replace(start=Start.crn(3, eps=EPS)), 1, x)
    assert src == "crn-online" and not torch.equal(received, delta)  # the rounds' copies give another start
    # a start of its own: its own name, label, cache key, and a spec that round-trips
    assert spec.label == "PGD-1+CRN3-FINAL" and Start.parse("crn3-final") == Start.crn(3, final=True)
    assert AttackSpec.from_dict(spec.to_dict()) == spec
    assert spec.key() != spec.replace(start=Start.crn(3, eps=EPS)).key()
    with pytest.raises(ValueError, match="final"):
        Start("uniform", final=True)


def test_crn_window_longer_than_the_kept_rounds_names_the_missing_file(run_dir):
    with pytest.raises(FileNotFoundError, match="round_0001"):
        evaluate_transfer(context(run_dir), AttackSpec(attack="pgd", steps=1, start="crn4"), write=False,
                          sanity=False)


def test_eps_zero_changes_nothing(run_dir):
    (res,) = evaluate_transfer(context(run_dir), AttackSpec(attack="bim", eps=0.0, alpha=0.01, steps=2,
                                                            start="crn3"), write=False, sanity=False)
    assert (res.frame.asr_literal == 0).all()
    assert (res.frame.clean_acc == res.frame.attack_acc).all()


def test_sweep_writes_csv_and_json_per_configuration(run_dir):
    # Arrange
    specs = sweep("pgd", eps=[0.01, 0.05], alpha=[0.005, 0.01], steps=2, start="zero")
    # Act
    results = evaluate_transfer(context(run_dir), specs)
    # Assert
    assert len(results) == 4 and len({r.key for r in results}) == 4
    table = tidy(results)
    assert len(table) == 4 * 9 and set(table.eps) == {0.01, 0.05} and set(table.alpha) == {0.005, 0.01}
    for r in results:
        back = pd.read_csv(r.csv_path)
        assert len(back) == 9 and np.allclose(back.asr_literal, r.frame.asr_literal)
        record = json.loads(r.json_path.read_text())
        assert record["summary"]["aasr"] == pytest.approx(r.summary.aasr, nan_ok=True)
        assert record["attack"]["eps"] == r.spec.eps and record["precision"] == "fp32"
        assert isinstance(record["sanity_warnings"], list)
        assert np.array(record["matrices"]["asr_literal"]).shape == (3, 3)
    assert (Path(run_dir) / "attacks" / "sanity.json").is_file()  # sanity checks ran once for the run


def test_seed_reproduces_the_random_start_and_another_seed_changes_it(run_dir):
    ctx = context(run_dir)

    def run(seed):
        spec = AttackSpec(attack="pgd", eps=0.3, alpha=0.05, steps=1, start="random", seed=seed)
        return evaluate_transfer(ctx, spec, write=False, sanity=False)[0]

    a, b, c = run(1), run(1), run(2)
    pd.testing.assert_frame_equal(a.frame[METRICS], b.frame[METRICS])
    assert a.key != c.key


def test_data_that_differ_from_splits_json_are_refused(run_dir):
    data = _tiny.tiny_data()
    bad = dataclasses.replace(data, client_test=(data.client_test[1], *data.client_test[1:]))
    with pytest.raises(ValueError, match="client 0's test set differs from .*splits.json"):
        load_context(open_run(run_dir), data=bad, model_factory=_tiny.tiny_model)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        load_context(open_run(tmp_path), data=_tiny.tiny_data(), model_factory=_tiny.tiny_model)


def test_attack_spec_validation_and_names():
    assert AttackSpec(attack="fgsm", alpha=0.3, steps=9).steps == 1
    assert AttackSpec(attack="fgsm", start="crn10").label == "FGSM+CRN10"
    assert AttackSpec(attack="pgd", steps=1, start="crn10").label == "PGD-1+CRN10"
    assert AttackSpec(attack="pgd", steps=40).label == "PGD-40"
    assert parse_start("crn5") == 5 and parse_start("zero") is None
    with pytest.raises(ValueError, match="start"):
        AttackSpec(start="crn")
    with pytest.raises(ValueError, match="unknown attack"):
        AttackSpec(attack="cw")
    with pytest.raises(ValueError, match="alpha"):
        AttackSpec(attack="pgd", alpha=None)
    with pytest.raises(ValueError, match="eps"):
        AttackSpec(eps=2.0)


def test_transfer_matrices_from_the_frame_agree_with_the_result(run_dir):
    (res,) = evaluate_transfer(context(run_dir), AttackSpec(attack="fgsm", eps=0.1, start="zero"), write=False,
                               sanity=False)
    asr = res.frame.pivot(index="attacker", columns="target", values="asr").to_numpy()
    np.testing.assert_array_equal(asr, res.matrices.asr)
    again = transfer_matrices([transfer_row(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(2), attacker=0)])
    assert summarise(again).aasr == 0.0  # nothing changes: ASR 0


# -- the CRN paper's tables from a run, and the papers' numbers ---------------------------------------------------


def test_crn_tables_put_the_papers_numbers_beside_ours(run_dir):
    from fedsafe.reproduce.reproductions.crn_tables import crn_tables

    # Act: the tiny run has 4 rounds, so CRN1 / CRN3 stand in for CRN5 / CRN10 and PGD-2 / PGD-4 for PGD-20 / 40
    tables = crn_tables(context(run_dir), windows=(1, 3), pgd_steps=(2, 40), table_2_steps=2, alpha=0.01)
    # Assert: the CRN step at eps/j (online buffers) and at the attack's alpha (replayed), each with its control
    assert list(tables.table_1.attack) == [
        "PGD-1+CRN3, step eps/j", "PGD-1+CRN3, step 0.01", "final-model control, step eps/j",
        "final-model control, step 0.01", "PGD-2", "PGD-40", "PGD-2, alpha 2.5eps/K", "PGD-40, alpha 2.5eps/K"]
    assert list(tables.table_1.start_source[:4]) == ["crn-online", "crn-replayed", "crn-final-model",
                                                     "crn-final-model"]
    paper = tables.table_1.aasr_paper.tolist()  # the paper's numbers only where the settings are the paper's
    assert all(np.isnan(p) for p in paper[:5]) and paper[5] == 0.3299
    assert tables.table_1.seconds_paper.iloc[5] == 6.794 and tables.table_1.acc_paper.iloc[5] == 0.8412
    assert list(zip(tables.table_2.attack, tables.table_2.start, strict=True)) == [
        ("FGSM", "vanilla"), ("FGSM", "crn1"), ("FGSM", "crn3"), ("PGD-2", "vanilla"), ("PGD-2", "crn1"),
        ("PGD-2", "crn3"), ("PGD-2, alpha 2.5eps/K", "vanilla"), ("PGD-2, alpha 2.5eps/K", "crn1"),
        ("PGD-2, alpha 2.5eps/K", "crn3")]
    assert tables.table_2.aetr_paper.iloc[0] == 0.848 and np.isnan(tables.table_2.aetr_paper.iloc[3])
    assert set(tables.claims) >= {"crn1_aasr_above_pgd40", "crn1_alpha_aasr_above_pgd40",
                                  "crn1_rounds_beat_final_model", "crn1_alpha_rounds_beat_final_model",
                                  "FGSM_crn3_raises_aetr"}
    assert "| PGD-1+CRN3, step eps/j |" in tables.markdown and "32.99%" in tables.markdown
    assert "PGD-1+CRN3 beats PGD-40 in AASR with the CRN step at 0.01" in tables.markdown
    assert "Accumulating over rounds beats the same steps on the final model alone" in tables.markdown
    assert tables.path.read_text() == tables.markdown


def test_paper_numbers_are_transcribed_with_their_sources():
    from fedsafe.reproduce.paper_numbers import (
        PAPER_NUMBERS,
        crn_table_1,
        crn_table_2,
        fedsafe_table_1,
        fedsafe_table_2,
        lookup,
    )

    t1 = crn_table_1("Meningioma")
    assert {k: (v["ACC"].value, v["AASR"].value, v["time"].value) for k, v in t1.items()} == {
        "PGD-1+CRN10": (0.8412, 0.6392, 0.217), "PGD-20": (0.8412, 0.2752, 3.423), "PGD-40": (0.8412, 0.3299, 6.794)}
    assert crn_table_1("Pathology")["PGD-40"]["time"].value == 10.843
    glioma = crn_table_2("Glioma")
    assert glioma[("FGSM", "CRN5")].value == 0.8706 and "garbled" in glioma[("FGSM", "CRN5")].note
    assert glioma[("PGD", "CRN5")].text == "83.64%%" and "garbled" in glioma[("PGD", "CRN5")].note
    assert len(fedsafe_table_1("MRI")) == 4 * 2 * 2 and len(fedsafe_table_2("Pathology")) == 5 * 2
    assert lookup(paper="fed-safe", table="Table 1", dataset="MRI", row="step 0.05",
                  column="distributed noise: ASR avg").value == 0.15
    # The printed averages of Fed-Safe Table 2 are the means of the four eps rows (to the printed rounding)
    for ds in ("Pathology", "MRI"):
        for col in ("ASR avg, no DP", "ASR avg, DP"):
            cells = [p.value for p in fedsafe_table_2(ds) if p.column == col and p.row != "Average"]
            avg = lookup(paper="fed-safe", table="Table 2", dataset=ds, row="Average", column=col).value
            assert abs(sum(cells) / 4 - avg) <= 0.0001
    assert all(p.source and "line" in p.source for p in PAPER_NUMBERS)


def test_true_labels_and_bf16_precision_are_options_and_are_recorded(run_dir):
    ctx = context(run_dir)
    (res,) = evaluate_transfer(ctx, AttackSpec(attack="bim", eps=0.1, alpha=0.02, steps=2, start="zero",
                                               labels="true"), precision="bf16", write=False, sanity=False)
    assert set(res.frame.precision) == {"bf16"} and res.record["precision"] == "bf16"
    assert set(res.frame.labels) == {"true"} and (res.frame.forward_passes_per_image == 0).all()
    assert res.key != AttackSpec(attack="bim", eps=0.1, alpha=0.02, steps=2, start="zero", labels="true").key(
        precision="fp32", batch_size=100, crn_precision="fp32")


def test_a_crn_start_takes_the_runs_budget_unless_it_names_its_own(run_dir):
    ctx = context(run_dir)
    x = ctx.data.client_test[1].x
    runs, src_runs, _ = start_delta(ctx, AttackSpec(attack="fgsm", eps=0.03, start="crn3"), 1, x)
    own, src_own, info = start_delta(ctx, AttackSpec(attack="fgsm", eps=0.03, start=Start.crn(3, eps=0.03)), 1, x)
    assert (src_runs, src_own) == ("crn-online", "crn-replayed")
    online = crn_state_from(ctx.client_states[1], 3)
    assert online.eps == EPS and torch.equal(runs, project_start(x, online.delta, 0.03))  # the run's, projected
    assert info["crn_alpha"] == pytest.approx(0.03 / 2)  # its own budget, the run's j = 2 steps a round
    assert own.abs().max() <= 0.03 + 1e-6 and not torch.equal(own, runs)


def test_sanity_checks_made_under_other_rules_are_recomputed(run_dir):
    """A cached sanity.json without the current rules version (an older fedsafe's) is not taken as it is."""
    from fedsafe.attacks.sanity import RULES_VERSION
    from fedsafe.evaluation.sanity_cache import sanity_cache, sanity_warnings

    ctx = context(run_dir)
    path = sanity_cache(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fp32": {"warnings": ["client 0: an old rule's warning"], "eps_values": [0, 0.5]}}))
    fresh = sanity_warnings(ctx, precision="fp32")
    assert "client 0: an old rule's warning" not in fresh
    stored = json.loads(path.read_text())["fp32"]
    assert stored["rules"] == RULES_VERSION and stored["warnings"] == fresh
    path.write_text(json.dumps({"fp32": {"warnings": ["client 0: kept"], "rules": RULES_VERSION}}))
    assert sanity_warnings(ctx, precision="fp32") == ["client 0: kept"]  # the current rules' cache is read
    path.unlink()  # the module's run is shared: leave no hand-made cache behind


def test_square_transfers_from_its_own_start_and_matches_a_hand_made_square(run_dir):
    """The gradient-free attack runs in the same loop: each attacker's Square on its own model, its generator
    keyed (seed, "square", attacker) and consumed batch after batch, every client's model evaluated on it."""
    # Arrange
    from fedsafe.attacks.square import square_linf

    ctx = context(run_dir)
    spec = AttackSpec(attack="square", eps=0.2, steps=40, seed=3)
    # Act
    (res,) = evaluate_transfer(ctx, spec, write=False, sanity=False, batch_size=7)
    # Assert: attacker 2 against an independent recomputation, batch by batch with one generator
    f = res.frame
    x, y, models = ctx.data.client_test[2].x, ctx.data.client_test[2].y, ctx.models
    labels, gen = predict(models[2], x), torch_generator(3, "square", 2)
    parts = [square_linf(models[2], x[i:i + 7], labels[i:i + 7], eps=0.2, queries=40, generator=gen)
             for i in range(0, len(x), 7)]
    x_adv = torch.cat([p.x_adv for p in parts])
    assert (x_adv - x).abs().max() <= 0.2 + 1e-6
    clean = np.stack([predict(m, x).numpy() for m in models])
    adv = np.stack([predict(m, x_adv).numpy() for m in models])
    expected = transfer_row(clean, adv, y.numpy(), attacker=2)
    got = f[f.attacker == 2].sort_values("target")
    np.testing.assert_array_equal(got.asr.to_numpy(), expected.asr)
    np.testing.assert_array_equal(got.clean_acc.to_numpy(), expected.clean_acc)
    assert expected.asr[2] > 0  # it fools the attacker's own model here
    # its cost: no gradient pass, the labels' forward pass plus the costliest batch's queries
    assert (f.fb_passes_per_image == 0).all() and set(f.start_source) == {"square-own"}
    assert int(got.forward_passes_per_image.iloc[0]) == 1 + max(p.forwards for p in parts)
    assert res.spec.label == "Square-40" and res.record["attack"]["alpha"] is None


def test_square_refuses_the_settings_it_would_ignore():
    assert AttackSpec(attack="square", steps=10).to_dict()["alpha"] is None
    assert AttackSpec.from_dict(AttackSpec(attack="square", steps=10, seed=2).to_dict()) == \
        AttackSpec(attack="square", steps=10, seed=2)
    for kwargs, message in [({"start": "zero"}, "start must be random"), ({"start": "crn5"}, "start must be random"),
                            ({"centre_grad": True}, "takes no gradient"), ({"alpha": 0.01}, "takes no step size"),
                            ({"steps": 0}, "queries must be an integer")]:
        with pytest.raises(ValueError, match=message):
            AttackSpec(attack="square", **kwargs)
    with pytest.raises(ValueError, match="square"):  # the known attacks are listed, Square among them
        AttackSpec(attack="cw")


def test_a_run_that_did_not_learn_is_announced_with_the_reason_training_recorded(run_dir, tmp_path, caplog):
    """The warning names what failed (a client model, say), not the global model when that one learned."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    reason = "client 2's model 71.0% vs majority 70.0%"
    write_json(copy / "summary.json", {"global_acc": 0.95, "learned": False, "learned_reason": reason})
    with caplog.at_level(logging.WARNING, logger="fedsafe"):
        ctx = context(copy)
    assert not ctx.learned
    assert f"the run did not learn ({reason})" in caplog.text and "global model" not in caplog.text
    caplog.clear()
    write_json(copy / "summary.json", {"global_acc": 0.71, "learned": False})  # an older summary: no reason
    with caplog.at_level(logging.WARNING, logger="fedsafe"):
        context(copy)
    assert "the run did not learn (global model 71.0% vs majority class" in caplog.text
