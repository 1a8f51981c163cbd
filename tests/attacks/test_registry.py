from __future__ import annotations

import pytest

from fedsafe.attacks import (
    ADAPTIVE_ATTACKS,
    ATTACKS,
    QUERY_ATTACKS,
    bim,
    ensemble_pgd,
    eot_pgd,
    fgsm,
    get_adaptive_attack,
    get_attack,
    get_query_attack,
    pgd,
    square_linf,
)


def test_registry_names_the_three_attacks():
    assert sorted(ATTACKS) == ["bim", "fgsm", "pgd"]
    assert (ATTACKS["fgsm"], ATTACKS["bim"], ATTACKS["pgd"]) == (fgsm, bim, pgd)
    assert get_attack("pgd") is pgd


def test_unknown_attack_lists_the_known_ones():
    with pytest.raises(ValueError, match="bim, fgsm, pgd"):
        get_attack("cw")


def test_adaptive_attacks_are_kept_apart():
    assert sorted(ADAPTIVE_ATTACKS) == ["ensemble-pgd", "eot-pgd"]
    assert ADAPTIVE_ATTACKS["ensemble-pgd"] is ensemble_pgd
    assert get_adaptive_attack("eot-pgd") is eot_pgd
    with pytest.raises(ValueError, match="ensemble-pgd, eot-pgd"):
        get_adaptive_attack("pgd")
    with pytest.raises(ValueError, match="bim, fgsm, pgd"):
        get_attack("eot-pgd")  # a runner that has only the final model cannot pick them by name


def test_gradient_free_attacks_are_kept_apart():
    assert sorted(QUERY_ATTACKS) == ["square"] and QUERY_ATTACKS["square"] is square_linf
    assert get_query_attack("square") is square_linf
    with pytest.raises(ValueError, match="known: square"):
        get_query_attack("pgd")
    with pytest.raises(ValueError, match="bim, fgsm, pgd"):
        get_attack("square")  # it takes queries and a generator, not the gradient attacks' keywords
