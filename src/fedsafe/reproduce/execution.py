"""Executing a plan: train what is not cached (each run resumes from its checkpoint), evaluate its attacks (cached
evaluations are read back), run the membership inferences a reproduction asks for (cached in the run), then build
and write every reproduction's outputs (:mod:`fedsafe.reproduce.outputs`).

``jobs`` > 1 runs the trainings, attack evaluations and membership inferences in that many worker processes
(:class:`concurrent.futures.ProcessPoolExecutor`, ``forkserver`` context where the platform has it, else
``spawn``: never a fork of a process that has run torch). Every run directory is trained by one task (and a
run another process holds is waited for, :meth:`~fedsafe.reproduce.run_cache.RunCache.train`); its evaluations
and membership inferences start once it is trained, the evaluations split into at most ``jobs`` chunks by the
starts they share (a replayed CRN start is computed once a chunk); every worker writes its results to the run's
cache, and the main process then reads them all back
in the plan's order, as ``jobs`` = 1 does, so the outputs do not depend on which worker finished first. Each worker
runs torch with ``threads`` intra-op threads (the CLI: ``max(1, cores // jobs)`` unless the user set threads);
on one GPU the workers share it. A worker's error stops the pool and reaches the caller as one :class:`JobFailed`
line naming the run; Ctrl-C stops the workers (they ignore SIGINT; the main process terminates them).

CPU kernels sum in an order that depends on the thread count (one weight of a 2-round synthetic training differs
by 7e-9 between 1 and 2 threads), so outputs are identical to ``jobs`` = 1 for the same threads a process.
"""

from __future__ import annotations

import math
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from ..attacks.spec import AttackSpec
from ..audit.mia import run_membership
from ..build import prepare_data
from ..evaluation.run_context import load_context
from ..evaluation.sanity_cache import sanity_warnings
from ..precision import resolve_precision
from ..progress import Progress, report
from ..runs.run import open_run
from .outputs import Written, write_outputs
from .planning import Audit, Plan, PlannedRun
from .run_cache import Evaluation, RunCache

__all__ = ["JobFailed", "chunks", "execute"]

JOBS_STEP = "trainings, attack evaluations and membership inferences"
"""The progress step of a run with several workers (one tick a task)."""


class JobFailed(RuntimeError):
    """A worker's training or evaluation failed: one line naming the run, the error's type and message."""


def _specs_of(p: Plan, rd: Path) -> list[AttackSpec]:
    return list(dict.fromkeys(j.measurement.spec for j in p.jobs if j.run_dir == rd))


def _audits_of(p: Plan, rd: Path) -> list[Audit]:
    return [a for a in p.audits if a[0] == rd]


def execute(p: Plan, *, progress: Progress | None = None,
            on_trained: Callable[[PlannedRun, bool], None] | None = None, jobs: int = 1, threads: int | None = None,
            worker_setup: Callable[[], object] | None = None) -> list[Written]:
    """Run the plan; ``on_trained(run, skipped)`` is called after each training run (a hook for progress, or for
    tests to interrupt). ``jobs`` worker processes (module docstring) with ``threads`` torch threads each (None:
    torch's default) and ``worker_setup()`` called first in each (a picklable module-level function, e.g. the CLI's
    allocator tuning). Returns one :class:`~fedsafe.reproduce.outputs.Written` per reproduction and task."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs > 1:
        _execute_parallel(p, jobs=jobs, threads=threads, worker_setup=worker_setup, progress=progress,
                          on_trained=on_trained)
    evaluations: dict[tuple[Path, AttackSpec], Evaluation] = {}
    o = p.options
    for rd, run in p.runs.items():  # with workers: every run is trained and every evaluation cached: read back
        if jobs == 1:
            outcome = p.cache.train(run.cfg, progress=progress)
            if on_trained is not None:
                on_trained(run, outcome.skipped)
        specs = _specs_of(p, rd)
        if specs:
            for ev in p.cache.evaluate(run.cfg, specs, precision=o.precision, batch_size=o.batch_size,
                                       sanity=o.sanity, progress=progress):
                evaluations[(rd, ev.spec)] = ev
        if jobs == 1:
            for audit in _audits_of(p, rd):
                run_membership(rd, p.audits[audit], progress=progress)  # computed once, then read from the run
    written = []
    for rep in p.reproductions:
        for task in p.tasks:
            jobs_of = [j for j in p.jobs if j.reproduction == rep.name and j.task == task]
            written.append(write_outputs(p.cache.results, rep, task, o, jobs_of, evaluations,
                                         p.trainings.get((rep.name, task, o.seeds[0]), {})))
    return written


# -- the worker pool -------------------------------------------------------------------------------------------


def chunks(specs: Sequence[AttackSpec], n: int, cost: Callable[[AttackSpec], float] = lambda s: 1.0
           ) -> list[list[AttackSpec]]:
    """``specs`` in at most ``n`` chunks for as many workers: specs that share a CRN start stay together (a
    replayed start is computed once a chunk), the groups dealt largest first to the lightest chunk (by ``cost``);
    each chunk keeps the specs' order.

    >>> from fedsafe.attacks.spec import Start
    >>> crn = Start.crn(5, alpha=0.001)
    >>> a, b = AttackSpec(steps=1, start=crn), AttackSpec(steps=2, start=crn)
    >>> [[s.steps for s in c] for c in chunks([a, AttackSpec(steps=40), b], 2)]
    [[1, 2], [40]]
    """
    groups: dict[object, list[AttackSpec]] = {}
    for s in specs:
        groups.setdefault(s.start if s.window else s, []).append(s)
    bins: list[tuple[float, int, list[AttackSpec]]] = []
    order = sorted(groups.values(), key=lambda g: -sum(cost(s) for s in g))
    for i, g in enumerate(order):
        if len(bins) < n:
            bins.append((0.0, i, []))
        k = min(range(len(bins)), key=lambda b: (bins[b][0], bins[b][1]))
        total, first, members = bins[k]
        bins[k] = (total + sum(cost(s) for s in g), first, members + g)
    rank = {s: i for i, s in enumerate(specs)}
    return [sorted(members, key=rank.__getitem__) for _, _, members in sorted(bins, key=lambda b: b[1])]


def _init_worker(threads: int | None, setup: Callable[[], object] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it terminates the workers
    if setup is not None:
        setup()
    if threads:
        torch.set_num_threads(threads)


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _train_task(cache: RunCache, run: PlannedRun, sanity_precision: str | None) -> bool:
    """Train (resume, or skip) one run; with ``sanity_precision`` also cache its sanity checks, which every chunk
    of its evaluations then reads. Returns whether the training was skipped (already complete)."""
    try:
        outcome = cache.train(run.cfg)
        if sanity_precision is not None:
            ctx = load_context(open_run(run.run_dir), data=prepare_data(run.cfg))
            sanity_warnings(ctx, precision=resolve_precision(sanity_precision), cache=True)
        return outcome.skipped
    except Exception as e:  # a plain exception with a plain message pickles back to the main process
        raise JobFailed(f"training {run.run_dir.name} ({', '.join(run.names)}): {_one_line(e)}") from None


def _evaluate_task(cache: RunCache, run: PlannedRun, specs: list[AttackSpec], precision: str, batch_size: int,
                   sanity: bool) -> int:
    """Evaluate ``specs`` on the trained run into its cache; returns how many."""
    try:
        cache.evaluate(run.cfg, specs, precision=precision, batch_size=batch_size, sanity=sanity)
        return len(specs)
    except Exception as e:
        labels = ", ".join(s.label for s in specs[:3]) + (", ..." if len(specs) > 3 else "")
        raise JobFailed(f"attacking {run.run_dir.name} ({labels}): {_one_line(e)}") from None


def _audit_task(run: PlannedRun, settings: Any) -> None:
    """The membership inference ``settings`` (``MiaSettings``) on the trained run, into its cache."""
    try:
        run_membership(run.run_dir, settings)
    except Exception as e:
        raise JobFailed(f"membership inference on {run.run_dir.name}: {_one_line(e)}") from None


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])  # torch imported once, in the server, before any thread runs
        return ctx
    return multiprocessing.get_context("spawn")


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and terminate the workers (their runs resume from their last checkpoint)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=10)


def _execute_parallel(p: Plan, *, jobs: int, threads: int | None, worker_setup: Callable[[], object] | None,
                      progress: Progress | None, on_trained: Callable[[PlannedRun, bool], None] | None) -> None:
    o = p.options
    todo = {rd: [s for s in _specs_of(p, rd) if (rd, s) not in p.cached_evals] for rd in p.runs}
    busy = sum(1 for specs in todo.values() if specs)
    per_run = max(1, math.ceil(jobs / max(busy, 1)))
    split = {rd: chunks(specs, per_run, lambda s, rd=rd: p.eval_estimates.get((rd, s), 1.0)) if specs else []
             for rd, specs in todo.items()}
    audits = {rd: [a for a in _audits_of(p, rd) if a not in p.cached_audits] for rd in p.runs}
    total, done = len(p.runs) + sum(len(c) for c in split.values()) + sum(len(a) for a in audits.values()), 0
    report(progress, JOBS_STEP, done, total)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_context(), initializer=_init_worker,
                               initargs=(threads, worker_setup))
    try:
        pending: dict[Future, tuple[str, Path]] = {}
        for rd, run in p.runs.items():
            prime = o.precision if o.sanity and len(split[rd]) > 1 else None
            pending[pool.submit(_train_task, p.cache, run, prime)] = ("train", rd)
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=lambda f: list(p.runs).index(pending[f][1])):
                kind, rd = pending.pop(fut)
                error = fut.exception()
                if error is not None:
                    raise JobFailed(str(error) if isinstance(error, JobFailed) else
                                    f"{rd.name}: {_one_line(error)}") from None
                done += 1
                report(progress, JOBS_STEP, done, total)
                if kind == "train":
                    if on_trained is not None:
                        on_trained(p.runs[rd], bool(fut.result()))
                    for chunk in split[rd]:
                        pending[pool.submit(_evaluate_task, p.cache, p.runs[rd], chunk, o.precision,
                                            o.batch_size, o.sanity)] = ("evaluate", rd)
                    for audit in audits[rd]:
                        pending[pool.submit(_audit_task, p.runs[rd], p.audits[audit])] = ("audit", rd)
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)
