"""``fedsafe attack`` refuses flags that would otherwise be accepted, dropped or replaced silently.

Every refusal comes before the run is read, so a folder that is no run at all is enough: the message must be the
flag's, not the run's."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fedsafe.attacks.spec import AttackSpec
from fedsafe.cli import app


def refusal(tmp_path, *args: str) -> str:
    r = CliRunner().invoke(app, ["attack", str(tmp_path), "--no-sanity", *args])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert text.count("error:") == 1 and "not a fedsafe run" not in text, text
    return text


def test_alpha_above_eps_is_refused(tmp_path):
    text = refusal(tmp_path, "--eps", "0.01", "--alpha", "0.05")
    assert "--alpha 0.05 is above --eps 0.01" in text
    assert "--alpha 0.03 is above --eps 0.02" in refusal(tmp_path, "--eps", "0.02,0.05", "--alpha", "0.01,0.03")


def test_alpha_above_eps_is_no_concern_of_fgsm(tmp_path):
    r = CliRunner().invoke(app, ["attack", str(tmp_path), "--attack", "fgsm", "--eps", "0.01", "--alpha", "0.05"])
    assert "not a fedsafe run directory" in " ".join(r.output.split())  # past the flags: FGSM takes no alpha


def test_eps_zero_is_refused(tmp_path):
    assert "--eps 0 is no attack" in refusal(tmp_path, "--eps", "0")
    assert "--eps 0 is no attack" in refusal(tmp_path, "--eps", "0.01,0", "--alpha", "0.001")


@pytest.mark.parametrize("eps", ["0.01,,0.03", "0.01,", ",0.01"])
def test_an_empty_eps_item_is_refused_not_dropped(tmp_path, eps):
    assert "--eps has an empty item" in refusal(tmp_path, "--eps", eps, "--alpha", "0.001")


def test_samples_zero_is_refused_not_replaced_by_the_default(tmp_path):
    assert "samples (K, noisy copies a step) must be an integer >= 1, got 0" in refusal(
        tmp_path, "--attack", "eot-pgd", "--samples", "0")


def test_surrogates_zero_is_refused_not_replaced_by_the_default(tmp_path):
    text = refusal(tmp_path, "--attack", "ensemble-pgd", "--surrogates", "0")
    assert "surrogates = R >= 1" in text and "got 0" in text and "last 5" not in text


def test_a_setting_of_another_attack_is_refused(tmp_path):
    assert "--samples and --noise-std are eot-pgd settings, not pgd's" in refusal(tmp_path, "--samples", "4")
    assert "--surrogates is an ensemble-pgd setting" in refusal(tmp_path, "--attack", "eot-pgd",
                                                                "--surrogates", "3")


def test_the_unknown_attack_message_lists_the_adaptive_attacks_too(tmp_path):
    text = refusal(tmp_path, "--attack", "cw")
    assert "'cw' is not one of 'fgsm', 'bim', 'pgd', 'eot-pgd', 'ensemble-pgd'" in text
    with pytest.raises(ValueError, match="known: bim, ensemble-pgd, eot-pgd, fgsm, pgd"):
        AttackSpec(attack="eot")
