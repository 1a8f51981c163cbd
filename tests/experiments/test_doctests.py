"""The ``>>>`` examples in the docstrings of the experiment, report and attack-spec modules run and hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import fedsafe.experiments
import fedsafe.report

EXTRA = ("fedsafe.attacks.spec", "fedsafe.attacks.budget")


def _with_examples() -> list[str]:
    """Every module of the packages (and ``EXTRA``) whose docstrings hold at least one example."""
    names = {m.name for pkg in (fedsafe.experiments, fedsafe.report)
             for m in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + ".")} | set(EXTRA)
    finder = doctest.DocTestFinder()
    return sorted(n for n in names if any(t.examples for t in finder.find(importlib.import_module(n))))


def test_the_modules_with_examples_are_found():
    assert {"fedsafe.attacks.spec", "fedsafe.attacks.budget", "fedsafe.experiments.delta",
            "fedsafe.experiments.verdicts", "fedsafe.experiments.reproductions"} <= set(_with_examples())


@pytest.mark.parametrize("name", _with_examples())
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} failed"
