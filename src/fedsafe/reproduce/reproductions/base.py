"""What a reproduction is (design §9): the types every table and figure of the papers is written with.

A :class:`Reproduction` declares

* its **trainings**: name -> :class:`~fedsafe.training.delta.ConfigDelta` over the task's base config (a
  function of that config, for settings computed from it, e.g. a clip from the initial model's norm);
* its **measurements** for a seed: a list of :class:`Measurement` (a training, an
  :class:`~fedsafe.attacks.spec.AttackSpec`, tags placing it in the table);
* a **builder**: :class:`BuildInput` (every measured number, over seeds) -> :class:`Built` (tables beside the
  papers' numbers, figures, verdicts).

Planning (:mod:`fedsafe.reproduce.planning`), execution (:mod:`fedsafe.reproduce.execution`) and output writing
(:mod:`fedsafe.reproduce.outputs`) are the same for all of them; the "setting" each output states is generated from
the trainings' deltas (:meth:`Reproduction.setting`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ...attacks.spec import AttackSpec
from ...config import ExperimentConfig
from ...defaults import ATTACK_BATCH_SIZE, ATTACK_PRECISION
from ...runs.run import Run
from ...training.delta import ConfigDelta, describe_trainings
from ...verdicts.claims import Verdict

__all__ = ["DEFAULT_SEEDS", "BuildInput", "Built", "Measurement", "Options", "Reproduction", "Table", "parse_seeds",
           "seeds_arg", "tags"]

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
"""The seeds ``fedsafe reproduce`` runs unless told otherwise (design §11: fixed before a reproduction runs)."""


def parse_seeds(text: str | int) -> tuple[int, ...]:
    """``--seeds``: "5" (or 5) -> seeds 0..4; "0,1,2" -> those seeds, in increasing order; "3," -> seed 3 alone.
    ValueError names the value when it is neither."""
    value = str(text).strip()
    try:
        if "," not in value:
            n = int(value)
            if n < 1:
                raise ValueError
            return tuple(range(n))
        seeds = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give a count N (seeds 0..N-1) or a comma-separated list of seeds "
                         "(e.g. 0,1,2)") from None
    return _checked(seeds, f"--seeds {text!r}")


def _checked(seeds: list[int], what: str) -> tuple[int, ...]:
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ValueError(f"{what}: the seeds must be distinct non-negative integers, at least one")
    return tuple(sorted(seeds))


def seeds_arg(seeds: tuple[int, ...]) -> str:
    """The ``--seeds`` value that gives ``seeds`` again: "5" for 0..4, "3," for seed 3 alone (a bare "3" is a count),
    else "0,2,5"."""
    if seeds == tuple(range(len(seeds))):
        return str(len(seeds))
    return f"{seeds[0]}," if len(seeds) == 1 else ",".join(map(str, seeds))


def tags(**kw: Any) -> tuple[tuple[str, Any], ...]:
    """A measurement's tags, in order: ``tags(method="DP", eps_value=0.01)``."""
    return tuple(kw.items())


@dataclass(frozen=True)
class Measurement:
    """One attack configuration on one training of a reproduction; ``tags`` place it in the table."""

    training: str
    spec: AttackSpec
    tags: tuple[tuple[str, Any], ...] = ()
    heatmap: bool = True  # show its attacker x target matrix in the report

    def tag(self) -> dict[str, Any]:
        return dict(self.tags)


@dataclass(frozen=True)
class Options:
    """How to run: profile, the seed list (fixed before anything runs and never chosen by outcome, design §11; an
    int N means seeds 0..N-1; ``fedsafe reproduce`` defaults to :data:`DEFAULT_SEEDS`, the library to seed 0),
    quick, extra ``key=value`` overrides (over the profile, under the reproduction's own settings), and the attack
    evaluation's precision and batch size."""

    profile: str = "cpu"
    seeds: tuple[int, ...] | int = (0,)
    quick: bool = False
    overrides: tuple[str, ...] = ()
    precision: str = ATTACK_PRECISION
    batch_size: int = ATTACK_BATCH_SIZE
    sanity: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int | tuple | list):
            raise ValueError(f"seeds must be a count or a list of seeds, got {self.seeds!r}")
        seeds = (parse_seeds(self.seeds) if isinstance(self.seeds, int) else
                 _checked(list(self.seeds), f"seeds {self.seeds!r}"))
        object.__setattr__(self, "seeds", seeds)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class Table:
    """A table to show: display strings (ours beside the papers'), and notes under it."""

    title: str
    frame: pd.DataFrame
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildInput:
    """What a builder receives: the measurements of one reproduction on one task, over every seed."""

    reproduction: Reproduction
    task: str
    options: Options
    summary: pd.DataFrame  # one row per (measurement, seed)
    runs: dict[str, Run]  # training name -> its seed-0 run
    trainings: Mapping[str, ConfigDelta] = field(default_factory=dict)  # training name -> its seed-0 delta
    paper_dataset: str | None = None  # the paper's dataset to compare with (None: the task's, if the paper has it)

    @property
    def quick(self) -> bool:
        return self.options.quick


@dataclass(frozen=True)
class Built:
    tables: tuple[Table, ...]
    figures: tuple[tuple[str, Any, str], ...]  # (file stem, matplotlib Figure, caption)
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...] = ()
    data: pd.DataFrame | None = None  # the aggregated numbers behind the tables (table.csv)


@dataclass(frozen=True)
class Reproduction:
    """A table or figure of a paper (module docstring). ``note``: what the trainings' deltas cannot say, appended
    to the generated setting."""

    name: str
    title: str
    paper: str  # "crn", "fed-safe" (or "demo")
    trainings: Callable[[ExperimentConfig], dict[str, ConfigDelta]]
    measurements: Callable[[int], list[Measurement]]
    build: Callable[[BuildInput], Built]
    note: str = ""
    min_seeds: int = 3  # the fewest seeds it asks for (CRN Table I and Fed-Safe Table 1: 5); fewer is said aloud
    audits: Callable[[bool], Mapping[str, Any]] | None = None
    """Training name -> the :class:`fedsafe.audit.mia.MiaSettings` of the membership inference its runs get
    (argument: ``--quick``): planned, costed, run and cached with the trainings and attacks, so that the build
    only reads it."""

    def setting(self, trainings: Mapping[str, ConfigDelta]) -> str:
        """The trainings in words (what they share, then what each changes), then ``note``."""
        text = describe_trainings(trainings)
        return "; ".join(t for t in (text, self.note) if t)
