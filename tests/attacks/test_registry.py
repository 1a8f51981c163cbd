from __future__ import annotations

import pytest

from fedsafe.attacks import ATTACKS, bim, fgsm, get_attack, pgd


def test_registry_names_the_three_attacks():
    assert sorted(ATTACKS) == ["bim", "fgsm", "pgd"]
    assert (ATTACKS["fgsm"], ATTACKS["bim"], ATTACKS["pgd"]) == (fgsm, bim, pgd)
    assert get_attack("pgd") is pgd


def test_unknown_attack_lists_the_known_ones():
    with pytest.raises(ValueError, match="bim, fgsm, pgd"):
        get_attack("cw")
