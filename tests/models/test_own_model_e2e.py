"""A model the user brings, end to end through the CLI: a user factory (with BatchNorm, attribute names unlike the
papers' CNN) and a MONAI network train a 2-round synthetic federation with downlink noise, uplink clipping and
online CRN, are attacked with PGD+CRN, and audited (the audit names the model; its verdicts agree with its own
numbers); the run records the model; a bad factory fails in one line before anything is written."""

from __future__ import annotations

import html
import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from fedsafe.cli import app
from fedsafe.config import config_hash, load_config
from fedsafe.report.setup import model_line
from fedsafe.runs import open_run

HERE = Path(__file__).resolve().parent
TINY = ["--set", "task.image_size=16", "--set", "task.synthetic_size=300", "--set", "splits.client_test_size=20",
        "--set", "train.local_epochs=1", "--set", "train.rounds=2", "--set", "train.precision=fp32",
        "--set", "federation.downlink_noise=0.01", "--set", "federation.uplink_clip=50",
        "--set", "crn.enabled=true", "--set", "crn.windows=[1]", "--set", "federation.keep_received_rounds=1"]
USER = ["--set", "model.name=user_models:make_net", "--set", "model.kwargs.hidden=6"]
MONAI = ["--set", "model.name=monai:DenseNet121",
         "--set", "model.kwargs={init_features: 4, growth_rate: 4, block_config: [2, 2]}"]
ATTACK = ["--attack", "pgd", "--eps", "0.05", "--alpha", "0.01", "--steps", "2", "--start", "crn1", "--no-sanity"]


@pytest.fixture(scope="module", autouse=True)
def user_models_importable():
    """The folder of ``user_models.py`` on sys.path, as the user's own package would be."""
    sys.path.insert(0, str(HERE))
    yield
    sys.path.remove(str(HERE))


def _train(tmp_path_factory, name: str, model: list[str]) -> Path:
    run = tmp_path_factory.mktemp(name) / "run"
    r = CliRunner().invoke(app, ["train", "-o", str(run), *TINY, *model])
    assert r.exit_code == 0, r.output
    return run


def _attacked(run: Path) -> pd.DataFrame:
    r = CliRunner().invoke(app, ["attack", str(run), *ATTACK])
    assert r.exit_code == 0, r.output
    assert "crn-online" in " ".join(r.output.split())
    table = pd.read_csv(next((run / "attacks").glob("pgd2-crn1-*.csv")))
    assert len(table) == 9 and table["asr"].between(0, 1).all() and table["n"].gt(0).all()
    return table


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    return _train(tmp_path_factory, "user-model", USER)


def test_the_run_records_the_model_and_its_arguments(user_run):
    summary = json.loads((user_run / "summary.json").read_text())
    assert summary["model"]["name"] == "user_models:make_net" and summary["model"]["kwargs"] == {"hidden": 6}
    assert summary["model"]["class"] == "user_models.SmallNet" and summary["model"]["width"] is None
    import user_models  # on sys.path (fixture)

    ref = user_models.make_net(num_classes=2, in_channels=1, image_size=16, hidden=6)
    assert summary["model"]["parameters"] == sum(p.numel() for p in ref.parameters())
    cfg = yaml.safe_load((user_run / "config.yaml").read_text())
    assert cfg["model"]["name"] == "user_models:make_net" and cfg["model"]["kwargs"] == {"hidden": 6}
    # the config hash covers the model: other kwargs are another run
    base = load_config(overrides=[s for s in TINY + USER if s != "--set"])
    other = load_config(overrides=[s for s in TINY + USER if s != "--set"][:-1] + ["model.kwargs.hidden=7"])
    assert config_hash(base) != config_hash(other)
    line = model_line(open_run(user_run))  # the HTML report names the class and its keywords, no paper width
    assert "Model user_models:make_net (user_models.SmallNet, {&quot;hidden&quot;: 6}) on 16x16x1" in line


def test_a_user_model_is_attacked_and_audited(user_run):
    _attacked(user_run)
    r = CliRunner().invoke(app, ["audit", str(user_run), "--quick", "--eot", "1", "--eps", "0.1", "--no-masking",
                                 "--max-shadow-epochs", "1"])
    assert r.exit_code == 0, r.output
    audit = json.loads((user_run / "audit" / "audit.json").read_text())
    assert [a["label"] for a in audit["attacks"]] == ["PGD-10", "PGD-10+CRN1", "EOT1-PGD-10"]
    assert 0 <= audit["membership"]["server"]["mean"]["lira"]["auc"] <= 1


def _expected_insider_verdict(attacks: list[dict]) -> str:
    """The insider verdict re-derived from the audit's numbers: the attack of the highest ASR on the benign
    clients, decided on its 95% interval (above, below or containing 50%)."""
    lo, hi = max(attacks, key=lambda a: a["asr_avg_benign"])["asr_avg_benign_ci"]
    return "fools most" if lo > 0.5 else "fools fewer than half" if hi < 0.5 else "undecided around 50%"


def _expected_mia_verdict(view: dict) -> str:
    above = [a for a in ("lira", "loss") if view["mean"][a]["auc_ci"][0] > 0.5]
    return "inferred above chance" if above else "not told apart from chance"


def test_a_monai_network_trains_is_attacked_and_audited(tmp_path_factory):
    if importlib.util.find_spec("monai") is None:
        pytest.skip("MONAI is not installed (pip install 'fedsafe[monai]')")
    run = _train(tmp_path_factory, "monai-model", MONAI)
    summary = json.loads((run / "summary.json").read_text())
    densenet = "monai.networks.nets.densenet.DenseNet121"
    kwargs = {"init_features": 4, "growth_rate": 4, "block_config": [2, 2]}
    assert summary["model"]["class"] == densenet and summary["model"]["kwargs"] == kwargs
    _attacked(run)

    # the cheapest audit the CLI has: 2 PGD steps, EOT K = 1, 2 shadows of 1 epoch, no masking checks
    r = CliRunner().invoke(app, ["audit", str(run), "--quick", "--steps", "2", "--eot", "1", "--eps", "0.1",
                                 "--no-masking", "--max-shadow-epochs", "1"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    audit = json.loads((run / "audit" / "audit.json").read_text())
    # the audit names the model it attacked: in its summary, its printout and its page
    assert audit["model"] == {"name": "monai:DenseNet121", "kwargs": kwargs, "class": densenet,
                              "parameters": summary["model"]["parameters"]}
    named = f"monai:DenseNet121 ({densenet}, {json.dumps(kwargs)}, {summary['model']['parameters']:,} parameters)"
    assert f"model: {named}" in r.output
    page = (run / "audit" / "audit.html").read_text()
    assert html.escape(named) in page
    # the verdicts, each re-derived from the audit's own numbers
    assert [a["label"] for a in audit["attacks"]] == ["PGD-2", "PGD-2+CRN1", "EOT1-PGD-2"]
    v = audit["verdicts"]
    assert list(v) == ["learned", "insider attack", "membership (server)", "membership (insider)",
                       "differential privacy"]
    assert v["learned"] == ("yes" if summary["learned"] else "no (the numbers below say nothing)")
    assert v["insider attack"].startswith(_expected_insider_verdict(audit["attacks"]))
    for view in ("server", "insider"):
        assert v[f"membership ({view})"].startswith(_expected_mia_verdict(audit["membership"][view]))
    # uplink clipping with downlink noise only: no noise an accountant can credit
    assert v["differential privacy"] == "not DP under either sensitivity"
    for what, verdict in v.items():
        assert f"{what}: {verdict}" in r.output


@pytest.mark.parametrize("model, message", [
    (["--set", "model.name=no_such_pkg.nets:make"], "model.name 'no_such_pkg.nets:make': cannot import"),
    (["--set", "model.name=user_models:wrong_shape"], "expected floating-point logits (2, 2)"),
])
def test_a_bad_factory_fails_in_one_line_before_anything_is_written(tmp_path, model, message):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "-o", str(run), *TINY, *model])
    assert r.exit_code != 0 and message in " ".join(r.output.split())
    assert not run.exists()
