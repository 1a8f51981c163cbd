"""Every ``>>>`` example in the package's docstrings runs and holds (issue 12: examples run as doctests, or go)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import fedsafe


def _with_examples() -> list[str]:
    """Every module of the package whose docstrings hold at least one example."""
    names = {m.name for m in pkgutil.walk_packages(fedsafe.__path__, prefix="fedsafe.")}
    finder = doctest.DocTestFinder()
    return sorted(n for n in names if any(t.examples for t in finder.find(importlib.import_module(n))))


def test_the_modules_with_examples_are_found():
    expected = {"fedsafe.attacks.spec", "fedsafe.attacks.budget", "fedsafe.experiments.delta",
                "fedsafe.experiments.verdicts", "fedsafe.experiments.reproductions", "fedsafe.attacks.iterative",
                "fedsafe.federation.aggregators", "fedsafe.metrics.transfer", "fedsafe.privacy.accountant"}
    assert expected <= set(_with_examples())


@pytest.mark.parametrize("name", _with_examples())
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} failed"
