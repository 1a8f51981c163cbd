"""The project's one policy for JSON, which has neither NaN nor infinity: NaN becomes null and +-inf the strings
"inf" / "-inf"; arrays and tensors become lists (anything with ``tolist``), tuples lists, paths strings, keys strings.
Every JSON file a run writes and every JSON-safe dict (the privacy reports) goes through :func:`json_safe`.

>>> json_safe({"eps": float("inf"), "acc": float("nan"), 1: (0.5, -float("inf"))})
{'eps': 'inf', 'acc': None, '1': [0.5, '-inf']}
>>> dumps_json({"a": float("nan")})
'{"a": null}'

Read back, :func:`json_float` undoes it for a number: null -> NaN, "inf" -> inf (anything else not a number: NaN).

>>> json_float(None), json_float("-inf"), json_float(0.5), json_float("n/a")
(nan, -inf, 0.5, nan)

and :func:`json_pct` writes such a number as a percent for the pages and texts.

>>> json_pct(0.1234), json_pct(None), json_pct("n/a")
('12.3%', 'n/a', 'n/a')
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["dumps_json", "json_float", "json_pct", "json_safe"]


def json_safe(o: Any) -> Any:
    """``o`` with every value JSON can hold (module docstring)."""
    if isinstance(o, float):
        if math.isnan(o):
            return None
        if math.isinf(o):
            return "inf" if o > 0 else "-inf"
        return o
    if isinstance(o, dict):
        return {str(k) if not isinstance(k, str) else k: json_safe(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [json_safe(v) for v in o]
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):  # numpy / torch scalars and arrays
        return json_safe(o.tolist())
    return o


def json_float(v: Any) -> float:
    """A number of a JSON record as a float: None (JSON's null) and anything not a number -> NaN, "inf" -> inf."""
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def json_pct(v: Any) -> str:
    """A number of a JSON record as a percent with one decimal (0.1234 -> "12.3%"); "n/a" where
    :func:`json_float` gives NaN."""
    f = json_float(v)
    return "n/a" if math.isnan(f) else f"{100 * f:.1f}%"


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_safe` of ``obj``: always valid JSON (``allow_nan=False`` holds by
    construction)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)
