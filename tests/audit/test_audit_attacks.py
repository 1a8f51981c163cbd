"""The insider's adaptive attacks in the transfer evaluation (design §6.1): EOT-PGD against the run's downlink noise
and the received copies' ensemble, their rows (passes an image: K x steps, R x steps), their specs and cache keys,
the masking checks of a run, and the audit of that run; on a tiny 3-client federation that learned its task."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedsafe.attacks import ensemble_pgd, eot_pgd, predict, uniform_start
from fedsafe.attacks.spec import AttackSpec, Start
from fedsafe.audit.runner import AuditSettings, run_audit
from fedsafe.audit.text import fmt_auc, fmt_ci, fmt_pct
from fedsafe.config import config_hash, load_config, to_yaml
from fedsafe.evaluation.adaptive_attacks import SQUARE_QUERIES, masking_audit, run_downlink_noise
from fedsafe.evaluation.results import read_evaluation
from fedsafe.evaluation.run_context import load_context
from fedsafe.evaluation.transfer_evaluation import evaluate_transfer
from fedsafe.federation.federation_spec import LocalSpec
from fedsafe.federation.simulator import Simulator
from fedsafe.metrics import transfer_row
from fedsafe.runs import open_run
from fedsafe.runs.atomic import write_json, write_text
from fedsafe.seeding import torch_generator

_spec = importlib.util.spec_from_file_location("_tiny_fed", Path(__file__).parents[1] / "federation" / "_tiny.py")
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)

ROUNDS, KEEP, S_D = 4, 3, 0.02
METRICS = ["clean_acc", "attack_acc", "asr", "asr_literal", "aetr", "n_correct", "n_aetr"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run that learned its task, with a privacy report naming s_D = 0.02 (the config says 0.01)."""
    data = _tiny.tiny_data()
    cfg = load_config(overrides=[f"train.rounds={ROUNDS}", "federation.downlink_noise=0.01",
                                 f"federation.keep_received_rounds={KEEP}", "crn.steps=2"])
    store = open_run(tmp_path_factory.mktemp("audit-attacks"), config_hash=config_hash(cfg)).store
    write_text(store.layout.config, to_yaml(cfg))
    write_json(store.layout.splits, data.split_ids())
    write_json(store.layout.privacy_report, {"sigma_downlink": S_D, "sigma_uplink": 0.0})
    local = LocalSpec(epochs=3, batch_size=8, optimizer="adam", lr=5e-3, grad_clip=20.0, augment=False,
                      precision="fp32")
    Simulator(spec=_tiny.tiny_spec(rounds=ROUNDS, keep_received=KEEP, local=local), data=data,
              model_factory=_tiny.tiny_model, store=store).run()
    return store.root


def context(run_dir):
    return load_context(open_run(run_dir), data=_tiny.tiny_data(), model_factory=_tiny.tiny_model, device="cpu")


BASE = AttackSpec(attack="pgd", eps=0.2, alpha=0.05, steps=3, start="random", seed=5)


def test_eot_with_one_noiseless_copy_is_pgd_row_for_row(run_dir):
    ctx = context(run_dir)
    pgd_res, eot_res = evaluate_transfer(ctx, [BASE, BASE.replace(attack="eot-pgd", samples=1, noise_std=0.0)],
                                         write=False, sanity=False)
    np.testing.assert_array_equal(eot_res.frame[METRICS].to_numpy(), pgd_res.frame[METRICS].to_numpy())
    assert (eot_res.frame.fb_passes_per_image == 3).all() and eot_res.record["fb_passes_per_image"] == 3
    assert pgd_res.summary.asr_self > 0  # the attack does something here
    assert pgd_res.frame.eot_samples.isna().all() and (eot_res.frame.eot_noise_std == 0).all()


def test_eot_uses_the_runs_recorded_noise_its_own_generator_and_counts_k_times_steps(run_dir):
    ctx = context(run_dir)
    assert run_downlink_noise(ctx) == S_D  # the privacy report's s_D, not the config's 0.01
    spec = BASE.replace(attack="eot-pgd", samples=4)
    (res,) = evaluate_transfer(ctx, spec, write=False, sanity=False)
    f = res.frame
    assert (f.fb_passes_per_image == 4 * 3).all() and res.record["fb_passes_per_image"] == 12
    assert (f.eot_samples == 4).all() and (f.eot_noise_std == S_D).all() and set(f.start_source) == {"random"}
    # attacker 1's row against an independent call: PGD's start, then the noise from (seed, "eot", attacker)
    x, y, models = ctx.data.client_test[1].x, ctx.data.client_test[1].y, ctx.models
    start = uniform_start(x, 0.2, torch_generator(5, "attack-start", 1))
    x_adv = eot_pgd(models[1], x, eps=0.2, alpha=0.05, steps=3, samples=4, noise_std=S_D, start=start,
                    generator=torch_generator(5, "eot", 1)).x_adv
    clean = np.stack([predict(m, x).numpy() for m in models])
    adv = np.stack([predict(m, x_adv).numpy() for m in models])
    expected = transfer_row(clean, adv, y.numpy(), attacker=1)
    np.testing.assert_array_equal(f[f.attacker == 1].sort_values("target").asr.to_numpy(), expected.asr)


def test_eot_without_noise_spends_one_gradient_a_step_and_equals_pgd(run_dir):
    ctx = context(run_dir)
    pgd_res, eot_res = evaluate_transfer(ctx, [BASE, BASE.replace(attack="eot-pgd", samples=8, noise_std=0.0)],
                                         write=False, sanity=False)
    np.testing.assert_array_equal(eot_res.frame[METRICS].to_numpy(), pgd_res.frame[METRICS].to_numpy())
    assert (eot_res.frame.fb_passes_per_image == 3).all() and (eot_res.frame.eot_samples == 8).all()


def test_eot_composes_with_a_crn_start(run_dir):
    spec = BASE.replace(attack="eot-pgd", samples=2, start=Start.crn(3))
    (res,) = evaluate_transfer(context(run_dir), spec, write=False, sanity=False)
    assert res.spec.label == "EOT2-PGD-3+CRN3"
    assert set(res.frame.start_source) == {"crn-replayed"} and (res.frame.crn_passes_per_image == 3 * 2).all()
    assert (res.frame.fb_passes_per_image == 6).all()


def test_the_ensemble_attacks_the_copies_of_the_last_r_rounds(run_dir):
    ctx = context(run_dir)
    (res,) = evaluate_transfer(ctx, BASE.replace(attack="ensemble-pgd", surrogates=2), write=False, sanity=False)
    f = res.frame
    assert (f.fb_passes_per_image == 2 * 3).all() and (f.surrogates == 2).all() and res.spec.label == "ENS2-PGD-3"
    x, y = ctx.data.client_test[0].x, ctx.data.client_test[0].y
    copies = []
    for state in ctx.store.received_window(0, range(ROUNDS - 1, ROUNDS + 1)):
        m = _tiny.tiny_model()
        m.load_state_dict(state)
        copies.append(m.eval())
    start = uniform_start(x, 0.2, torch_generator(5, "attack-start", 0))
    x_adv = ensemble_pgd(ctx.models[0], x, models=copies, eps=0.2, alpha=0.05, steps=3, start=start).x_adv
    clean = np.stack([predict(m, x).numpy() for m in ctx.models])
    adv = np.stack([predict(m, x_adv).numpy() for m in ctx.models])
    expected = transfer_row(clean, adv, y.numpy(), attacker=0)
    np.testing.assert_array_equal(f[f.attacker == 0].sort_values("target").asr.to_numpy(), expected.asr)
    with pytest.raises(FileNotFoundError, match="round_0001"):  # the run kept 3 rounds
        evaluate_transfer(ctx, BASE.replace(attack="ensemble-pgd", surrogates=4), write=False, sanity=False)


def test_adaptive_evaluations_are_written_and_read_back_by_their_key(run_dir):
    spec = BASE.replace(attack="eot-pgd", samples=2)
    (res,) = evaluate_transfer(context(run_dir), spec, sanity=False)
    record, frame = read_evaluation(run_dir, res.key, spec)
    assert record["attack"]["samples"] == 2 and record["attack"]["noise_std"] is None
    assert list(frame.eot_noise_std.unique()) == [S_D]
    assert read_evaluation(run_dir, res.key, spec.replace(samples=3)) is None  # another K: not this record


def test_specs_of_the_adaptive_attacks_and_unchanged_keys_of_the_others():
    # the keys of plain attacks are those of the code before the adaptive fields existed
    ctx = {"precision": "fp32", "batch_size": 100, "crn_precision": "fp32"}
    assert AttackSpec(attack="pgd", eps=0.05, alpha=0.005, steps=20, seed=3).key(**ctx) == "pgd20-random-9ee43cf259"
    assert AttackSpec(attack="fgsm", eps=0.03, start="crn5").key(**ctx) == "fgsm-crn5-3a07825458"
    eot = AttackSpec(attack="eot-pgd", steps=20, samples=8, noise_std=0.01, start="crn10")
    ens = AttackSpec(attack="ensemble-pgd", steps=5, surrogates=3)
    for s in (eot, ens):
        assert AttackSpec.from_dict(s.to_dict()) == s
    assert eot.passes_per_image == 160 and ens.passes_per_image == 15 and ens.label == "ENS3-PGD-5"
    assert eot.key(**ctx) != eot.replace(samples=4).key(**ctx)
    for bad, match in [(dict(attack="pgd", samples=4), "EOT-PGD settings"),
                       (dict(attack="ensemble-pgd"), "surrogates = R"),
                       (dict(attack="eot-pgd", samples=0), "samples"),
                       (dict(attack="eot-pgd", noise_std=-0.1), "noise_std"),
                       (dict(attack="bim", surrogates=2), "ensemble-PGD setting")]:
        with pytest.raises(ValueError, match=match):
            AttackSpec(**bad)


@pytest.mark.parametrize("bad, match", [(dict(crn_window=0), "CRN window"), (dict(eot=(0,)), "--eot"),
                                        (dict(eps=1.5), "eps"), (dict(steps=0), "steps")])
def test_audit_settings_refuse_bad_values_with_the_shared_budget_checks(bad, match):
    with pytest.raises(ValueError, match=match):
        AuditSettings.of(**bad)


class _Rounding(nn.Module):
    """Rounds its input to 1/4 steps first: a shattered gradient (zero almost everywhere)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x * 4).round() / 4)


def _mean_difference_classifier(ctx) -> nn.Module:
    """A linear model on pixels (class-1 mean minus class-0 mean): smooth, so white-box PGD must reach ~100%."""
    x, y = ctx.data.client_train[0].x.flatten(1), ctx.data.client_train[0].y
    w = x[y == 1].mean(0) - x[y == 0].mean(0)
    lin = nn.Linear(x.shape[1], 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros_like(w), w]))
        lin.bias.copy_(torch.tensor([0.0, -float(w @ (x[y == 1].mean(0) + x[y == 0].mean(0))) / 2]))
    return nn.Sequential(nn.Flatten(), lin).eval()


def test_masking_checks_flag_the_client_whose_model_hides_its_gradient(run_dir):
    ctx = context(run_dir)
    smooth = _mean_difference_classifier(ctx)
    ctx.models[:] = [smooth, smooth, _Rounding(smooth).eval()]
    report = masking_audit(ctx, seed=0)
    assert [c["possibly_masking"] for c in report] == [False, False, True]
    assert report[0]["asr_by_eps"][0] == 0 and report[0]["asr_by_eps"][-1] >= 0.95 and report[0]["rises_with_steps"]
    assert report[2]["asr_by_eps"][-1] < 0.95 and any("shattered or vanishing" in r for r in report[2]["reasons"])
    # the flagged client is attacked again without gradients; Square reads only the logits, so the rounding that
    # stops PGD does not stop it: it fools more at the largest eps, and the report says so
    assert report[0]["square_asr_by_eps"] is None and report[2]["square_queries"] == SQUARE_QUERIES
    square = report[2]["square_asr_by_eps"]
    assert len(square) == len(report[2]["eps_values"]) and square[0] == 0
    assert square[-1] > report[2]["asr_by_eps"][-1] + 0.05
    assert any(r.startswith(f"gradient-free Square-{SQUARE_QUERIES} fools") for r in report[2]["reasons"])


def test_the_audit_of_a_run_that_learned_says_its_numbers_and_reads_them_back(run_dir):
    settings = AuditSettings(quick=True, eps=0.2, eot=(2,), crn_window=10)
    first = run_audit(context(run_dir), settings)
    labels = [a["label"] for a in first["attacks"]]
    assert labels == ["PGD-10", "PGD-10+CRN3", "EOT2-PGD-10"]  # CRN3: the run kept 3 rounds
    assert [a["fb_passes_per_image"] for a in first["attacks"]] == [10, 10, 20]
    # the attacker's CRN is replayed in the audit's precision (as its attacks run), and the record says so
    records = [json.loads(p.read_text()) for p in sorted((run_dir / "attacks").glob("*crn3*.json"))]
    assert [(r["precision"], r["crn_precision"]) for r in records] == [(settings.precision, settings.precision)]
    assert first["attacks"][2]["noise_std"] == S_D
    best = max(first["attacks"], key=lambda a: a["asr_avg_benign"])
    text = " ".join(first["sentences"])
    ci = fmt_ci(best["asr_avg_benign_ci"])
    assert best["asr_avg_benign"] > 0 and f"An insider fools {fmt_pct(best['asr_avg_benign'])}{ci} of the other" in text
    m = first["membership"]
    server, insider = m["server"]["mean"]["lira"], m["insider"]["mean"]["lira"]
    assert f"inferred at AUC {fmt_auc(server['auc'])}{fmt_ci(server['auc_ci'], fmt_auc)} by the server" in text
    assert f"AUC {fmt_auc(insider['auc'])}{fmt_ci(insider['auc_ci'], fmt_auc)} by an insider" in text
    assert "PGD+CRN3 instead of CRN10" in text and "WARNING" not in text
    # the quick audit says so first: its budget, and that its intervals hold the models fixed
    assert first["sentences"][0] == first["budget"]["text"] and first["budget"]["level"] == "quick"
    assert first["budget"]["text"].startswith("Budget: a QUICK audit (a smoke test): PGD-10") and \
        "2 shadow models a view of at most 5 epochs" in first["budget"]["text"] and "(--full: EOT K = 8" in text
    assert first["verdicts"]["learned"] == "yes" and "insider attack" in first["verdicts"]
    again = run_audit(context(run_dir), settings)
    assert again["cached"] == {"attacks": 3, "attack_specs": 3, "masking": True, "membership": True}
    assert again["sentences"] == first["sentences"] and again["attacks"] == [{**a, "cached": True}
                                                                          for a in first["attacks"]]
    assert json.loads((run_dir / "audit" / "audit.json").read_text())["sentences"] == first["sentences"]


def test_the_audit_keys_its_crn_replay_by_its_own_precision():
    from fedsafe.audit import runner

    crn = BASE.replace(start="crn10")
    keys = {p: runner._key(crn, AuditSettings(precision=p)) for p in ("fp32", "bf16")}
    assert keys["fp32"] == crn.key(precision="fp32", batch_size=100, crn_precision="fp32")  # --full: as before
    assert keys["bf16"] == crn.key(precision="bf16", batch_size=100, crn_precision="bf16")


def test_cached_masking_checks_of_an_older_rule_are_not_read_back(monkeypatch):
    """The masking cache is keyed by the checks' rules version: a report made under an older rule (e.g. the
    vanishing-gradient fraction before the Wilson bound) is recomputed, not shown as today's verdict."""
    from types import SimpleNamespace

    from fedsafe.audit import runner

    ctx = SimpleNamespace(store=SimpleNamespace(layout=SimpleNamespace(masking=lambda h: h)))
    settings = runner.AuditSettings()
    now = runner._masking_path(ctx, settings)
    monkeypatch.setattr(runner, "MASKING_RULES", runner.MASKING_RULES - 1)
    assert runner._masking_path(ctx, settings) != now


def test_the_audit_page_and_sentence_show_the_square_cross_check_and_older_audits_still_render():
    from fedsafe.audit.page import _masking
    from fedsafe.audit.text import _masking_sentence

    flagged = {"client": 2, "eps_values": [0.0, 0.5], "asr_by_eps": [0.0, 0.4], "steps_values": [1, 5],
               "asr_by_steps": [0.1, 0.2], "steps_for_eps": 10, "eps_for_steps": 0.03, "possibly_masking": True,
               "reasons": ["possibly masking (shattered or vanishing gradients): ..."], "square_queries": 300,
               "square_asr_by_eps": [0.0, 0.9]}
    ok = {**flagged, "client": 0, "possibly_masking": False, "reasons": [], "square_queries": None,
          "square_asr_by_eps": None}
    html = "".join(_masking([ok, flagged]))
    assert "gradient-free (Square) ASR by eps" in html and "300 queries" in html and "not run: no rule broken" in html
    assert "(gradient-free Square-300 at eps 0.5: 90%, PGD 40%)" in _masking_sentence({"masking": [ok, flagged]})
    older = {k: v for k, v in flagged.items() if not k.startswith("square")}  # an audit cached before Square
    assert "not in this audit: made before the check" in "".join(_masking([older]))
    assert "Square" not in _masking_sentence({"masking": [older]})
