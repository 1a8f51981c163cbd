"""One command per table and figure of the papers (design §9): ``plan`` what to train and attack (and what it
costs), ``execute`` it, and read the tables beside the papers' numbers. This module is the public face of:

* :mod:`.reproductions`: one file per table / figure, the registry ``REPRODUCTIONS`` and ``GROUPS``;
* :mod:`.planning` and :mod:`.costs`: trainings (shared between tables through
  :class:`~fedsafe.experiments.cache.RunCache`), attack evaluations, cache state and estimates;
* :mod:`.execution`: training, attacking (cached in each run's ``attacks/`` folder);
* :mod:`.outputs`: the CSVs, Markdown, figures, verdicts and manifest of each reproduction and task.

``--quick`` trains 10 rounds of 1 local epoch and says so in every output. In use:
``p = plan(["crn-table1"], tasks=["meningioma"], results="results"); print("\\n".join(p.describe()));
written = execute(p)``.
"""

from __future__ import annotations

from .execution import execute
from .outputs import Written, markdown_table
from .planning import PAPER_TASKS, QUICK_OVERRIDES, TASK_NAMES, Plan, PlannedRun, expand_tasks, plan
from .reproductions import GROUPS, REPRODUCTIONS, resolve
from .reproductions.base import BuildInput, Built, Measurement, Options, Reproduction, Table
from .reproductions.format import METRICS, aggregate, cell, fmt_frac, fmt_seconds, run_label
from .verdicts import accuracy_verdict

__all__ = [
    "GROUPS", "METRICS", "PAPER_TASKS", "QUICK_OVERRIDES", "REPRODUCTIONS", "TASK_NAMES", "BuildInput", "Built",
    "Measurement", "Options", "Plan", "PlannedRun", "Reproduction", "Table", "Written", "accuracy_verdict",
    "aggregate", "cell", "execute", "expand_tasks", "fmt_frac", "fmt_seconds", "markdown_table", "plan", "resolve",
    "run_label",
]
