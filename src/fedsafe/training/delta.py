"""Typed config deltas: what a reproduction changes in the profile's config, held as values (not ``key=value``
strings), each checked against the config's schema (:class:`fedsafe.config.ExperimentConfig`) when it is written,
and described in words for the outputs (the "setting" of a table is generated from its deltas).

>>> fed_safe = ConfigDelta.of(splits={"num_clients": 3}, defense={"name": "fed-safe"},
...                           federation={"downlink_noise": 0.01})
>>> (fed_safe | ConfigDelta.of(defense={"fraction": 1.0})).describe()
'3 clients, defense fed-safe, downlink noise s_D 0.01, f = 1'
>>> fed_safe.overrides()[1:]
('defense.name=fed-safe', 'federation.downlink_noise=0.01')
>>> ConfigDelta.of(defense={"fraction": 2.0})
Traceback (most recent call last):
...
ValueError: defense.fraction=2.0: Input should be less than or equal to 1
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..config import ExperimentConfig
from ..yaml12 import read_yaml

__all__ = ["ConfigDelta", "describe_trainings"]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


_PHRASES: dict[str, Callable[[Any], str]] = {
    "splits.num_clients": lambda v: f"{_fmt(v)} clients",
    "splits.partition": lambda v: f"{_fmt(v)} partition",
    "defense.name": lambda v: f"defense {_fmt(v)}",
    "defense.fraction": lambda v: f"f = {_fmt(v)}",
    "defense.adaptation_data": lambda v: "LEAKY adaptation on the attack sets" if v == "attack-sets" else
    f"adaptation on the {_fmt(v)} set",
    "splits.server_for_fraction": lambda v: f"server set for f = {_fmt(v)} of the largest client",
    "federation.downlink_noise": lambda v: f"downlink noise s_D {_fmt(v)}",
    "federation.uplink_clip": lambda v: f"uplink clip C {_fmt(v)}",
    "federation.uplink_noise": lambda v: f"uplink noise s_U {_fmt(v)}",
    "crn.enabled": lambda v: "online CRN" if v else "no CRN",
    "crn.eps": lambda v: f"CRN eps {_fmt(v)}",
    "crn.windows": lambda v: f"CRN windows {_fmt(v)}",
    "train.rounds": lambda v: f"{_fmt(v)} rounds",
    "train.local_epochs": lambda v: f"{_fmt(v)} local epochs",
}
"""How a setting reads in a caption; any other one reads ``path value``."""


def _check(path: str, value: Any) -> None:
    """ValueError naming ``path=value`` when the config's schema refuses it (unknown key, wrong type, range)."""
    part, _, leaf = path.partition(".")
    fields = ExperimentConfig.model_fields
    if part not in fields:
        raise ValueError(f"{path}: unknown config key {part!r}")
    model: type[BaseModel] = ExperimentConfig
    data: dict[str, Any] = {part: value}
    if leaf:
        sub = fields[part].annotation
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)) or "." in leaf or leaf not in sub.model_fields:
            raise ValueError(f"{path}: unknown config key")
        model, data = sub, {leaf: value}
    try:
        model.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{path}={value!r}: {e.errors()[0]['msg']}") from None


def _scalar(v: Any) -> str:
    """``v`` as the YAML scalar an override string carries (plain where YAML reads the text back as ``v``)."""
    if isinstance(v, str):
        return v if read_yaml(v) == v else json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    return json.dumps(v)


@dataclass(frozen=True)
class ConfigDelta:
    """Settings over a base config: ``items`` are (dotted path, value) pairs, each checked against the schema."""

    items: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        merged: dict[str, Any] = {}
        for path, value in self.items:
            _check(path, value)
            merged[path] = tuple(value) if isinstance(value, list) else value
        object.__setattr__(self, "items", tuple(merged.items()))

    @classmethod
    def of(cls, **parts: Any) -> ConfigDelta:
        """``ConfigDelta.of(splits={"num_clients": 3}, seed=1)``: a mapping per config part, or a top-level value."""
        items: list[tuple[str, Any]] = []
        for part, value in parts.items():
            if isinstance(value, Mapping):
                items += [(f"{part}.{k}", v) for k, v in value.items()]
            else:
                items.append((part, value))
        return cls(tuple(items))

    def __or__(self, other: ConfigDelta) -> ConfigDelta:
        """Both deltas; ``other`` wins where they set the same key."""
        return ConfigDelta((*self.items, *other.items))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.items)

    def get(self, path: str, default: Any = None) -> Any:
        return self.as_dict().get(path, default)

    def without(self, paths: Iterable[str]) -> ConfigDelta:
        drop = set(paths)
        return ConfigDelta(tuple((p, v) for p, v in self.items if p not in drop))

    def overrides(self) -> tuple[str, ...]:
        """``key=value`` strings for :func:`fedsafe.config.load_config` (they give the very same config)."""
        return tuple(f"{p}={_scalar(v)}" for p, v in self.items)

    def describe(self) -> str:
        """The settings in words, in order: ``"3 clients, defense fed-safe, downlink noise s_D 0.01"``."""
        return ", ".join(_PHRASES[p](v) if p in _PHRASES else f"{p} {_fmt(v)}" for p, v in self.items)


def describe_trainings(trainings: Mapping[str, ConfigDelta]) -> str:
    """The settings of a reproduction's trainings: what they all share, then what each one changes; a sweep (more
    than three trainings) reads as the values of its most varied setting per value of the others.

    >>> at = ConfigDelta.of(defense={"name": "adversarial-training"})
    >>> describe_trainings({f"f={f}": at | ConfigDelta.of(defense={"fraction": f}) for f in (0.1, 0.2, 0.5, 1.0)})
    'defense adversarial-training; f = 0.1, 0.2, 0.5, 1'
    """
    deltas = list(trainings.values())
    if not deltas:
        return ""
    common = [(p, v) for p, v in deltas[0].items if all(d.as_dict().get(p, object()) == v for d in deltas[1:])]
    head = ConfigDelta(tuple(common)).describe()
    if len(deltas) == 1:
        return head
    keys = {p for p, _ in common}
    rest = [d.without(keys) for d in deltas]
    if len(deltas) > 3:
        rest_text = _sweep_text(rest)
    else:
        rest_text = "; ".join(f"{name}: {d.describe() or 'as above'}" for name, d in zip(trainings, rest, strict=True))
    return f"{head}; {rest_text}" if head else rest_text


def _sweep_text(deltas: list[ConfigDelta]) -> str:
    """"<the other settings>: <swept setting> v1, v2, ..." per value of the other settings."""
    varied = {p for d in deltas for p, _ in d.items}
    sweep = max(sorted(varied), key=lambda p: len({repr(d.get(p)) for d in deltas}))
    groups: dict[ConfigDelta, list[Any]] = {}
    for d in deltas:
        groups.setdefault(d.without([sweep]), []).append(d.get(sweep))
    phrase = _PHRASES.get(sweep, lambda v: f"{sweep} {_fmt(v)}")
    return "; ".join((f"{other.describe()}: " if other.items else "") + phrase(values)
                     for other, values in groups.items())
