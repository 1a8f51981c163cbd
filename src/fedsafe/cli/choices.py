"""Option types for the sub-commands' fixed sets of values, taken from the registries and the config's literals
(never a list of their own): ``--profile``, ``--task``, ``--attack``, ``--precision``, ``--labels``...; and the
type of ``-o/--output``, which names the folder a command writes into, in every command (:func:`output_dir`).

>>> from fedsafe.config import TrainConfig
>>> literal_values(TrainConfig, "precision")
('fp32', 'bf16', 'auto')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args, get_origin, get_type_hints

import click

from ..config import PROFILES

__all__ = ["OUTPUT", "choice", "literal_values", "output_dir", "profile_choice"]


def choice(values: Iterable[str]) -> click.Choice:
    """A click choice of ``values``, in their order (case-sensitive: the names are lower case)."""
    return click.Choice(list(values))


def literal_values(cls: type, field: str) -> tuple[str, ...]:
    """The allowed values of a field typed ``Literal[...]`` (``X | None`` reads the ``X``) of a config model or a
    dataclass."""
    annotation = get_type_hints(cls)[field]
    if get_origin(annotation) is not Literal:
        annotation = next(a for a in get_args(annotation) if get_origin(a) is Literal)
    return tuple(str(v) for v in get_args(annotation))


def profile_choice() -> click.Choice:
    """``--profile``: the shipped profiles (:data:`fedsafe.config.PROFILES`)."""
    return choice(PROFILES)


OUTPUT = ("--output", "-o")
"""The option names of the folder a command writes into (a run directory, a results folder, a report's folder):
one meaning in every command. A single file a command writes gets a name of its own (``report --html FILE``)."""


def output_dir() -> click.Path:
    """The type of ``-o/--output``: a folder (made if missing; an existing file there is a usage error)."""
    return click.Path(file_okay=False, dir_okay=True)
