"""One JSON policy (fedsafe.jsonsafe): the run files and the privacy reports write NaN as null and +-inf as
"inf" / "-inf", and no module keeps a policy of its own."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fedsafe.jsonsafe import dumps_json, json_safe
from fedsafe.privacy.accountant import TargetNoise
from fedsafe.runs.atomic import write_json

SRC = Path(__file__).resolve().parents[1] / "src" / "fedsafe"


def _reference(o):
    """The policy stated again, for floats in nested dicts and lists."""
    if isinstance(o, float):
        return None if math.isnan(o) else ("inf" if o == math.inf else "-inf" if o == -math.inf else o)
    if isinstance(o, dict):
        return {str(k): _reference(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_reference(v) for v in o]
    return o


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.25, [math.nan, (1.0, -math.inf)],
                                   {"a": {"b": math.nan}, 3: "x"}, None, "nan"])
def test_the_policy(value, tmp_path):
    assert json_safe(value) == _reference(value)
    write_json(tmp_path / "x.json", {"v": value})
    assert json.loads((tmp_path / "x.json").read_text()) == {"v": _reference(value)}
    assert json.loads(dumps_json(value)) == _reference(value)


def test_arrays_become_lists_under_the_same_policy():
    assert json_safe(np.array([1.0, np.nan, np.inf])) == [1.0, None, "inf"]


def test_the_privacy_report_uses_the_run_files_policy():
    noise = TargetNoise(target_epsilon=math.inf, delta=1e-5, accountant="pld", sensitivity="nbafl", rounds=3,
                        noise_multiplier=math.nan, sensitivity_uplink=0.1, sigma_uplink=0.0, sigma_downlink=0.0,
                        uplink_meets_target=False)
    d = noise.to_dict()
    assert d["target_epsilon"] == "inf" and d["noise_multiplier"] is None
    assert d == json.loads(dumps_json(dict(noise.__dict__)))


def test_no_second_json_policy():
    """No module but fedsafe.jsonsafe defines a JSON-safe conversion: NaN and infinities are written one way."""
    defs = [str(f.relative_to(SRC)) for f in sorted(SRC.rglob("*.py")) for node in ast.walk(ast.parse(f.read_text()))
            if isinstance(node, ast.FunctionDef) and "json_safe" in node.name]
    assert defs == ["jsonsafe.py"]
