"""The audit's plain sentences (``fedsafe.audit.text.sentences``): a run that did not learn is said first, with
the reason training recorded."""

from __future__ import annotations

import math

from fedsafe.audit.text import sentences


def test_the_audit_warns_first_with_the_reason_the_run_did_not_learn():
    s = {"learned": False, "learned_reason": "client 2's model 71.0% vs majority 70.0%", "global_acc": 0.95,
         "majority_class_rate": 0.7, "clients": 1, "attacks": [],
         "privacy": {"epsilon": {"nbafl": math.inf, "unconditional": math.inf}}}
    first = sentences(s)[0]
    assert first.startswith("WARNING: the run did not learn (client 2's model 71.0% vs majority 70.0%")
    s["learned_reason"] = None  # an older summary: the global model's numbers
    assert sentences(s)[0].startswith("WARNING: the run did not learn (global model 95.0% vs majority class 70.0%")
    assert not sentences({**s, "learned": True})[0].startswith("WARNING")
