"""Every ``>>>`` example in the package's docstrings runs and holds (examples run as doctests, or go).

A module that needs an optional extra which is not installed (``flwr``: ``pip install -e '.[flower]'``) is
reported as skipped with the reason, so that the suite collects and passes without it."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import fedsafe

OPTIONAL = {"flwr": "flower", "monai": "monai"}  # an optional package -> the extra that installs it


def _missing_extra(exc: ImportError) -> str | None:
    """The extra whose package the failed import was missing, or None (a real error)."""
    top = (exc.name or "").partition(".")[0]
    return OPTIONAL.get(top)


def _modules() -> list[ModuleType | str]:
    """Every module of the package, imported; the name of one that needs an extra not installed."""
    out: list[ModuleType | str] = []
    for info in sorted(pkgutil.walk_packages(fedsafe.__path__, prefix="fedsafe."), key=lambda m: m.name):
        try:
            out.append(importlib.import_module(info.name))
        except ImportError as exc:
            if _missing_extra(exc) is None:
                raise
            out.append(f"{info.name}|{exc.name}")
    return out


def _params() -> list:
    finder = doctest.DocTestFinder()
    params = []
    for m in _modules():
        if isinstance(m, str):
            name, _, missing = m.partition("|")
            extra = OPTIONAL[missing.partition(".")[0]]
            params.append(pytest.param(name, id=name, marks=pytest.mark.skip(
                reason=f"{name} needs {missing}, not installed (pip install -e '.[{extra}]')")))
        elif any(t.examples for t in finder.find(m)):
            params.append(pytest.param(m.__name__, id=m.__name__))
    return params


PARAMS = _params()


def test_the_modules_with_examples_are_found():
    expected = {"fedsafe.attacks.spec", "fedsafe.attacks.budget", "fedsafe.training.delta",
                "fedsafe.verdicts.claims", "fedsafe.reproduce.reproductions", "fedsafe.attacks.iterative",
                "fedsafe.federation.aggregators", "fedsafe.metrics.transfer", "fedsafe.privacy.accountant",
                "fedsafe.cli.runtime", "fedsafe.cli.choices"}
    assert expected <= {p.values[0] for p in PARAMS if not p.marks}


def test_a_missing_extra_is_told_apart_from_a_broken_import():
    assert _missing_extra(ModuleNotFoundError("No module named 'flwr'", name="flwr")) == "flower"
    assert _missing_extra(ModuleNotFoundError("No module named 'flwr.app'", name="flwr.app")) == "flower"
    assert _missing_extra(ModuleNotFoundError("No module named 'fedsafe.nope'", name="fedsafe.nope")) is None
    assert _missing_extra(ImportError("cannot import name 'x' from 'fedsafe.config'")) is None


@pytest.mark.parametrize("name", PARAMS)
def test_docstring_examples(name):
    # torch's global generator starts at seed 0 here (tests/conftest.py), so examples that draw from it do not pass
    # or fail by the process's random seed.
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} failed"
