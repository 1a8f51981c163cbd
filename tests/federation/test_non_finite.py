"""One non-finite check of a state (federation/state.non_finite): the screen of an upload, the aggregate's check
and the saved models' check all read it; counted against a plain Python count of the entries."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path

import torch

from fedsafe.federation.screening import screen_uploads
from fedsafe.federation.state import non_finite

SRC = Path(__file__).resolve().parents[2] / "src" / "fedsafe"


def _reference(state):
    out = {}
    for k, v in state.items():
        if v.is_floating_point():
            vals = v.flatten().tolist()
            nan, inf = sum(math.isnan(x) for x in vals), sum(math.isinf(x) for x in vals)
            if nan or inf:
                out[k] = (nan, inf)
    return out


def test_non_finite_counts_like_a_plain_count():
    g = torch.Generator().manual_seed(0)
    state = OrderedDict()
    for i, shape in enumerate([(3, 4), (5,), (2, 2, 2), (7,)]):
        t = torch.randn(shape, generator=g)
        flat = t.view(-1)
        for j in torch.randint(0, flat.numel(), (i,), generator=g).tolist():
            flat[j] = (math.nan, math.inf, -math.inf)[j % 3]
        state[f"w{i}"] = t.to(torch.bfloat16) if i == 2 else t
    state["count"] = torch.tensor([7])  # an integer buffer: never non-finite
    assert non_finite(state) == _reference(state)
    assert list(non_finite(state)) == [k for k in state if k in _reference(state)]  # the state's order
    assert non_finite({"w": torch.zeros(3)}) == {}


def test_the_upload_screen_reads_it():
    ok = {"w": torch.zeros(3)}
    bad = {"w": torch.tensor([math.nan, math.inf, 1.0])}
    s = screen_uploads([ok, bad, ok])
    assert [r["client"] for r in s.rejected] == [1]
    assert "2 entries NaN/Inf (1 NaN, 1 Inf), first in 'w'" in str(s.rejected[0]["reason"])


def test_no_second_non_finite_check_of_a_state():
    """torch.isfinite / isnan / isinf appear only in the one check and in the image checks (not states)."""
    allowed = {"federation/state.py", "flower/audit_data.py"}
    pattern = re.compile(r"torch\.is(finite|nan|inf)\(")
    bad = [str(f.relative_to(SRC)) for f in sorted(SRC.rglob("*.py"))
           if str(f.relative_to(SRC)) not in allowed and pattern.search(f.read_text())]
    assert not bad, bad
