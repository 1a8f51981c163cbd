"""``fedsafe audit RUN_DIR`` end to end on a tiny synthetic run trained by ``fedsafe train``: the cost estimate
first, the HTML page and the JSON summary, the sentences carrying the JSON's numbers, a second call served from the
cache, and one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from fedsafe.audit.text import fmt_auc, fmt_ci, fmt_eps, fmt_pct, strongest
from fedsafe.cli import app
from fedsafe.runs import open_run

TINY = ["--set", "task.image_size=16", "--set", "task.synthetic_size=300", "--set", "model.width=0.04",
        "--set", "splits.client_test_size=20", "--set", "train.local_epochs=1", "--set", "train.rounds=3",
        "--set", "train.precision=fp32", "--set", "federation.downlink_noise=0.01",
        "--set", "federation.keep_received_rounds=2"]
AUDIT = ["--quick", "--eot", "1,2", "--eps", "0.1"]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("audit-cli") / "run"
    r = CliRunner().invoke(app, ["train", "-o", str(run), *TINY])
    assert r.exit_code == 0, r.output
    return run


@pytest.fixture(scope="module")
def audited(run_dir):
    r = CliRunner().invoke(app, ["audit", str(run_dir), *AUDIT])
    assert r.exit_code == 0, r.output
    return r


def test_audit_writes_the_page_and_the_summary_whose_sentences_carry_its_numbers(run_dir, audited):
    text = flat(audited.output)
    assert text.index("Estimated cost:") < text.index("audit of")  # the estimate comes first
    s = json.loads((run_dir / "audit" / "audit.json").read_text())
    assert [a["label"] for a in s["attacks"]] == ["PGD-10", "PGD-10+CRN2", "EOT1-PGD-10", "EOT2-PGD-10"]
    assert [a["fb_passes_per_image"] for a in s["attacks"]] == [10, 10, 10, 20]
    best, m, eps = strongest(s["attacks"]), s["membership"], s["privacy"]["epsilon"]
    sentences = " ".join(s["sentences"])
    ci = fmt_ci(best["asr_avg_benign_ci"])
    assert ci.startswith(" (95% CI ") and f"An insider fools {fmt_pct(best['asr_avg_benign'])}{ci} of the other" \
        in sentences
    server, insider = m["server"]["mean"]["lira"], m["insider"]["mean"]["lira"]
    assert f"inferred at AUC {fmt_auc(server['auc'])}{fmt_ci(server['auc_ci'], fmt_auc)} by the server" in sentences
    assert f"AUC {fmt_auc(insider['auc'])}{fmt_ci(insider['auc_ci'], fmt_auc)} by an insider" in sentences
    # the quick audit states its budget first and labels itself; the verdicts are printed and kept
    assert s["level"] == "quick" and s["budget"]["shadows"] == 2 and s["budget"]["max_shadow_epochs"] == 5
    assert s["budget"]["text"] in s["sentences"] and s["budget"]["text"].startswith("Budget: a QUICK audit")
    assert "Intervals are 95% over images" in s["budget"]["text"] and "Budget: a QUICK audit" in text
    assert set(s["verdicts"]) >= {"learned", "insider attack", "membership (server)", "differential privacy"}
    assert "Verdicts:" in text and f"insider attack: {s['verdicts']['insider attack']}" in text
    # downlink noise only and no clip: the accountant credits nothing, and the sentence says so
    assert fmt_eps(eps["nbafl"]) == fmt_eps(eps["unconditional"]) == "infinite" and "epsilon infinite" in sentences
    assert "PGD+CRN2 instead of CRN10" in sentences and "TPR at 1% FPR is not resolvable with 45" in sentences
    info = open_run(run_dir)
    assert s["global_acc"] == info.summary["global_acc"] and s["learned"] == info.summary["learned"]
    if not s["learned"]:  # the tiny run is too small to learn: said first and loudly
        assert s["sentences"][0].startswith("WARNING: the run did not learn") and "WARNING" in text
        assert (info.summary.get("learned_reason") or "global model") in s["sentences"][0]  # the recorded reason
    html = (run_dir / "audit" / "audit.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "http" not in html.split("</style>")[1]
    assert all(x.replace("'", "&#x27;") in html for x in s["sentences"])
    assert html.count('class="heatmap"') == 4 and "membership inference</h2>" in html
    assert "<h2>Verdicts</h2>" in html and "AUC [95% DeLong interval]" in html and "[95% Wilson interval" in html
    assert "written:" in text and "audit.html" in text


def test_a_second_audit_is_served_from_the_cache(run_dir, audited):
    first = json.loads((run_dir / "audit" / "audit.json").read_text())
    stamps = {p: p.stat().st_mtime_ns for p in [*(run_dir / "attacks").glob("*.json"),
                                                *(run_dir / "audit").glob("mia-*.json")]}
    r = CliRunner().invoke(app, ["audit", str(run_dir), *AUDIT])
    assert r.exit_code == 0, r.output
    assert "Cached already: 4 of 4 attack evaluation(s), masking checks yes, membership inference yes" in \
        flat(r.output)
    again = json.loads((run_dir / "audit" / "audit.json").read_text())
    assert again["sentences"] == first["sentences"] and again["membership"]["server"] == first["membership"]["server"]
    assert again["cached"] == {"attacks": 4, "attack_specs": 4, "masking": True, "membership": True}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing recomputed, nothing rewritten
    # other settings are other evaluations: K = 3 is new, the rest is read back
    r = CliRunner().invoke(app, ["audit", str(run_dir), *AUDIT[:-3], "2,3", "--eps", "0.1", "--dry-run"])
    assert r.exit_code == 0 and "Cached already: 3 of 4 attack evaluation(s)" in flat(r.output)


def test_one_line_errors(run_dir, tmp_path):
    def error(args):
        r = CliRunner().invoke(app, ["audit", *args])
        assert r.exit_code == 1, r.output
        assert r.output.count("error:") == 1
        return flat(r.output)

    assert "is not a fedsafe run directory" in error([str(tmp_path)])
    assert "no such directory" in error([str(tmp_path / "nowhere")])
    incomplete = tmp_path / "incomplete"
    shutil.copytree(run_dir, incomplete)
    (incomplete / "summary.json").unlink()
    assert "the run is not complete (round" in (e := error([str(incomplete)])) and "no summary.json)" in e
    assert "--eot must be an integer" in error([str(run_dir), "--eot", "a,b"])
    assert "every K must be an integer >= 1" in error([str(run_dir), "--eot", "0"])
    assert "at least 2 shadow models" in error([str(run_dir), "--shadows", "1"])
    poisoned = tmp_path / "poisoned"
    shutil.copytree(run_dir, poisoned)
    store = open_run(poisoned).store
    state = store.load_final(1)
    store.save_final(1, {k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in state.items()})
    assert "non-finite weights" in error([str(poisoned)])
    assert torch.isnan(next(iter(store.load_final(1).values()))).all()
