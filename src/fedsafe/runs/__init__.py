"""fedsafe.runs: the run directory, its layout and every read and write of it.

The one way in is :func:`open_run`::

    from fedsafe.runs import open_run

    run = open_run("runs/exp")                  # a run on disk, keyed by its own config.yaml
    run.config, run.summary, run.metrics        # the typed config and the records (read on first use)
    run.layout.final_model(0)                   # every path of the directory (fedsafe.runs.layout)
    run.store.load_final(0)                     # the verified reader and writer of its files (fedsafe.runs.store)

    run = open_run("runs/exp", config=cfg)      # the run of ``cfg`` to write or resume (training, Flower)

The run loaded for attacking or auditing it (its data, rebuilt and checked, and every client's model) is
``fedsafe.evaluation.run_context.load_context(run)``: it needs the builders, a layer above this package.

The modules: :mod:`~fedsafe.runs.layout` (every file and folder name: no other module spells one),
:mod:`~fedsafe.runs.run` (the opener), :mod:`~fedsafe.runs.store` (verified model files, checkpoints, JSON),
:mod:`~fedsafe.runs.claim` (which folders a run may be written into, the exclusive hold),
:mod:`~fedsafe.runs.datacheck` and :mod:`~fedsafe.runs.fingerprint` (is this the data the run trained on),
:mod:`~fedsafe.runs.atomic` (atomic writes) and :mod:`~fedsafe.runs.errors` (one-line errors).
"""

from .layout import RunLayout
from .run import Run, open_run

__all__ = ["Run", "RunLayout", "open_run"]
