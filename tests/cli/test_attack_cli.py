"""``fedsafe attack RUN_DIR`` end to end: a tiny synthetic run trained with online CRN, then attacked."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from fedsafe.cli import app

TINY = ["--set", "task.image_size=16", "--set", "task.synthetic_size=300", "--set", "model.width=0.04",
        "--set", "splits.client_test_size=20", "--set", "train.local_epochs=1", "--set", "train.rounds=3",
        "--set", "train.precision=fp32", "--set", "federation.downlink_noise=0.01",
        "--set", "crn.enabled=true", "--set", "crn.windows=[1,2]", "--set", "federation.keep_received_rounds=2"]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("attack-cli") / "run"
    r = CliRunner().invoke(app, ["train", "-o", str(run), *TINY])
    assert r.exit_code == 0, r.output
    return run


def test_attack_prints_the_asr_matrix_and_averages_and_writes_csv_json(run_dir):
    # Act
    r = CliRunner().invoke(app, ["attack", str(run_dir), "--attack", "pgd", "--eps", "0.05", "--alpha", "0.01",
                                 "--steps", "1", "--start", "crn2"])
    # Assert
    assert r.exit_code == 0, r.output
    text = flat(r.output)
    assert "PGD-1+CRN2" in text and "ASR (attacker x target)" in text
    assert "AASR" in text and "ASR avg (benign)" in text and "AETR" in text
    assert "crn-online" in text  # eps and the CRN settings equal the run's: the online buffers are used
    files = sorted((run_dir / "attacks").glob("pgd1-crn2-*"))
    assert [f.suffix for f in files] == [".csv", ".json"]
    table = pd.read_csv(files[0])
    assert len(table) == 9 and set(table.columns) >= {"attacker", "target", "asr", "aetr", "grad_cosine"}
    record = json.loads(files[1].read_text())
    assert record["synthetic"] is True and record["label"] == "PGD-1+CRN2"


def test_a_sweep_over_eps_and_alpha_in_one_call(run_dir):
    r = CliRunner().invoke(app, ["attack", str(run_dir), "--attack", "bim", "--eps", "0.01,0.03",
                                 "--alpha", "0.005,0.01", "--steps", "2", "--no-sanity"])
    assert r.exit_code == 0, r.output
    assert "4 attack configuration(s)" in flat(r.output)
    assert flat(r.output).count("ASR (attacker x target)") == 4


def test_bad_input_is_a_one_line_error(run_dir, tmp_path):
    for args, message in [
        (["--start", "crn"], "start must be zero, random or crnR"),
        (["--eps", "a,b"], "--eps must be a number"),
        (["--attack", "cw"], "'--attack' / '-a': 'cw' is not one of 'fgsm', 'bim', 'pgd', 'eot-pgd', 'ensemble-pgd'"),
    ]:  # usage errors: 2
        r = CliRunner().invoke(app, ["attack", str(run_dir), "--no-sanity", *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in flat(r.output) and r.output.count("error:") == 1
    # runtime errors: 1
    r = CliRunner().invoke(app, ["attack", str(run_dir), "--no-sanity", "--start", "crn3"])
    assert r.exit_code == 1 and "round_0001" in flat(r.output) and r.output.count("error:") == 1, r.output
    r = CliRunner().invoke(app, ["attack", str(tmp_path)])
    assert r.exit_code == 1 and "not a fedsafe run directory" in flat(r.output)


def test_online_crn_of_a_trained_run_equals_its_replay_with_the_runs_own_model(run_dir):
    """End to end through ``fedsafe train`` (build_hooks wires the CRN hook) and the run's own model factory."""
    from fedsafe.attacks.crn_hook import crn_state_from, replay_crn
    from fedsafe.build import model_factory
    from fedsafe.evaluation.run_context import load_context
    from fedsafe.runs import open_run

    ctx = load_context(open_run(run_dir))
    states = ctx.store.load_checkpoint().client_states
    for i in range(3):
        online = crn_state_from(states[i], 2)
        received = ctx.store.received_window(i, range(ctx.total_rounds - 1, ctx.total_rounds + 1))
        replayed = replay_crn(received, ctx.data.client_test[i].x, model_factory=model_factory(ctx.cfg, ctx.data),
                              eps=online.eps, steps=online.steps, alpha=online.alpha)
        assert online.rounds == 2 and online.steps == 1  # j = E = train.local_epochs
        assert torch.equal(online.delta, replayed)


def test_crn_tables_command_prints_both_tables_and_writes_markdown(run_dir):
    r = CliRunner().invoke(app, ["crn-tables", str(run_dir), "--windows", "1,2"])
    assert r.exit_code == 0, r.output
    text = flat(r.output)
    assert "Table I" in text and "Table II: AETR" in text and "32.99%" in text  # the paper's PGD-40 AASR
    assert (run_dir / "attacks" / "crn_tables.md").is_file()
    bad = CliRunner().invoke(app, ["crn-tables", str(run_dir), "--windows", "1,x"])
    assert bad.exit_code == 2 and "--windows must be" in flat(bad.output)


def test_an_attacker_who_knows_the_noise_from_the_command_line(run_dir):
    r = CliRunner().invoke(app, ["attack", str(run_dir), "--attack", "eot-pgd", "--samples", "3", "--steps", "2",
                                 "--alpha", "0.01", "--no-sanity"])
    assert r.exit_code == 0, r.output
    assert "EOT3-PGD-2" in flat(r.output)
    record = json.loads(next((run_dir / "attacks").glob("eot-pgd2-random-*.json")).read_text())
    assert record["attack"]["samples"] == 3 and record["fb_passes_per_image"] == 6
    assert record["attack"]["noise_std"] is None  # the run's own s_D (0.01), read from its privacy report
    r = CliRunner().invoke(app, ["attack", str(run_dir), "--attack", "ensemble-pgd", "--surrogates", "2",
                                 "--steps", "1", "--alpha", "0.01", "--no-sanity"])
    assert r.exit_code == 0, r.output
    assert "ENS2-PGD-1" in flat(r.output)


def test_the_gradient_free_square_attack_from_the_command_line(run_dir):
    r = CliRunner().invoke(app, ["attack", str(run_dir), "--attack", "square", "--queries", "30", "--eps", "0.1",
                                 "--no-sanity"])
    assert r.exit_code == 0, r.output
    text = flat(r.output)
    assert "Square-30: eps 0.1, 30 queries, start random" in text and "ASR (attacker x target)" in text
    assert "forward passes an image, no gradient" in text and "square-own" in text
    record = json.loads(next((run_dir / "attacks").glob("square30-random-*.json")).read_text())
    assert record["attack"]["attack"] == "square" and record["fb_passes_per_image"] == 0
    for args, message in [  # a setting Square would ignore, or a Square setting on another attack: usage errors
        (["--attack", "square", "--steps", "5"], "takes --queries"),
        (["--attack", "square", "--alpha", "0.01"], "takes --queries"),
        (["--attack", "square", "--start", "crn2"], "start must be random"),
        (["--attack", "pgd", "--queries", "5"], "not pgd's: give --steps"),
        (["--attack", "square", "--queries", "0"], "queries must be an integer >= 1"),
    ]:
        bad = CliRunner().invoke(app, ["attack", str(run_dir), "--no-sanity", *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert message in flat(bad.output) and bad.output.count("error:") == 1, (args, bad.output)
