"""Writing a reproduction's outputs, in ``RESULTS/<name>/<task>/``: ``rows.csv`` (every measured row: attacker x
target x attack x seed), ``summary.csv`` (one row per attack configuration and seed), ``table.csv`` (mean and std
over seeds), ``<name>.md`` (the tables beside the papers' numbers, the figures, the verdicts), the figures (PNG and
SVG), ``verdicts.json`` and ``manifest.json`` (what :mod:`fedsafe.report.html` reads).

The Markdown names the task, profile, seeds, training and attack precision, device, wall time and the exact command
that reproduces it (:func:`command_line`), and states the verdict rules under the verdicts
(:data:`fedsafe.verdicts.claims.RULES`).
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..build import default_data_root
from ..progress import duration
from ..report import figures as figs
from ..runs.atomic import write_json, write_text
from ..runs.run import Run, open_run
from ..training.delta import ConfigDelta
from ..training.trainer import summary_learned
from ..verdicts.claims import RULES, Verdict, seeds_text
from ..verdicts.evidence import Point
from .planning import QUICK_OVERRIDES, Job
from .reproductions.base import BuildInput, Built, Measurement, Options, Reproduction, seeds_arg
from .reproductions.format import run_label
from .run_cache import Evaluation

__all__ = ["Written", "built_markdown", "command_line", "markdown_table", "pathology_note", "points_frame",
           "run_facts", "setting_text", "summary_row", "write_outputs"]

FILES_NOTE = ("Files: `rows.csv` (every measured row: attacker x target x attack x seed), `summary.csv` (one row per "
              "attack configuration and seed), `table.csv` (mean and std over seeds), `verdicts.json` (each claim, "
              "and per point its n, matched seeds, means, difference, 95% CI, p and Holm p), `points.csv` (those "
              "points, one row each), `manifest.json`. "
              "Papers' numbers: `fedsafe.reproduce.paper_numbers` (with their sources).")


@dataclass(frozen=True)
class Written:
    """The outputs of one reproduction on one task."""

    reproduction: str
    task: str
    folder: Path
    markdown: Path
    manifest: Path
    built: Built


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of a frame of strings."""
    cols = [str(c) for c in frame.columns]
    esc = [[str(v).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def summary_row(*, reproduction: str, task: str, seed: int, measurement: Measurement, run_dir: Path,
                evaluation: Evaluation, info: Run, options: Options) -> dict[str, Any]:
    """One row of ``summary.csv``: a measurement's place (tags), its attack, its numbers and its run's."""
    spec, rec = measurement.spec, evaluation.record
    s, summ = rec["summary"], info.summary
    sens = info.privacy.get("sensitivities") or {}
    frame = evaluation.frame
    learned = summary_learned(summ, info.data_report)  # an older summary: its client models judged here
    crn_s = (float(frame.drop_duplicates("attacker")["crn_seconds"].mean())
             if "crn_seconds" in frame and "attacker" in frame else 0.0)
    return {
        "reproduction": reproduction, "task": task, "seed": seed, "training": measurement.training,
        **measurement.tag(), "label": spec.label, "attack": spec.attack, "eps": spec.eps, "alpha": spec.alpha,
        "steps": spec.steps, "start": str(spec.start), **{k: _float(s[k]) for k in (  # JSON null: undefined (NaN)
            "asr_self", "asr_avg_benign", "aasr", "aetr", "asr_self_literal", "asr_avg_benign_literal",
            "aasr_literal", "clean_acc", "attack_acc", "undefined_asr_cells", "undefined_aetr_cells")},
        "seconds_per_batch": rec["attack_seconds_per_batch"], "fb_passes_per_image": rec["fb_passes_per_image"],
        "crn_passes_per_image": rec["crn_passes_per_image"],
        "start_source": ", ".join(sorted(set(rec["start_source"].values()))),
        "global_acc": _float(summ.get("global_acc")), "learned": learned.learned, "learned_reason": learned.reason,
        "majority_class_rate": _float(summ.get("majority_class_rate")), "crn_seconds": crn_s,
        "client_acc": float(np.mean(summ["client_final_acc"])) if summ.get("client_final_acc") else math.nan,
        "epsilon": _float((info.privacy.get("pld") or {}).get("epsilon")),
        "epsilon_unconditional": _float(((sens.get("unconditional") or {}).get("pld") or {}).get("epsilon")),
        "train_precision": summ.get("precision"), "device": summ.get("device"),
        "attack_precision": rec.get("precision"), "profile": options.profile, "quick": options.quick,
        "run_dir": str(run_dir), "attack_key": evaluation.key,
    }


def setting_text(inp: BuildInput, setting: str) -> str:
    """The paragraph under a reproduction's title: the task, the profile's model and training (from the first run),
    seeds, the attack evaluation, then ``setting`` (the reproduction's own, from its deltas)."""
    info = next(iter(inp.runs.values()), None)
    cfg, summ = (info.config, info.summary) if info is not None else (None, {})
    m, tr, size = (cfg.model, cfg.train, cfg.task.image_size) if cfg is not None else (None, None, None)
    ch = (summ.get("model") or {}).get("channels")
    quick = (" **QUICK run** (fewer rounds: " + ", ".join(QUICK_OVERRIDES) + "): not the papers' setting." if
             inp.quick else "")
    extra = f" Extra settings: {', '.join(inp.options.overrides)}." if inp.options.overrides else ""
    syn = " The task is synthetic (procedurally generated images, not real data)." if inp.task == "synthetic" else ""
    o = inp.options
    fewer = (f" (fewer than the {inp.reproduction.min_seeds} this reproduction asks for)"
             if len(o.seeds) < inp.reproduction.min_seeds else "")
    return (f"Task {inp.task}; profile {o.profile} ({m and m.name} width {m and m.width}, "
            f"{size}x{size}x{ch}, {tr and tr.rounds} rounds x {tr and tr.local_epochs} local epochs, "
            f"{tr and tr.optimizer} lr {tr and tr.lr}, training precision {summ.get('precision')}); "
            f"{len(o.seeds)} seed(s) ({seeds_text(o.seeds)}){fewer}{', mean ± std' if len(o.seeds) > 1 else ''}; "
            "attacks "
            f"in {o.precision if o.precision != 'auto' else 'auto precision (resolved in the wall-time line)'}, "
            f"{o.batch_size} "
            f"images a batch; each client's attack set is its own test set. Setting: {setting}.{quick}{extra}{syn}")


def command_line(name: str, task: str, options: Options, results: Path) -> str:
    """The ``fedsafe reproduce`` command that gives these outputs again (every option spelt out)."""
    parts = ["fedsafe", "reproduce", name, "--task", task, "--profile", options.profile, "--seeds",
             seeds_arg(options.seeds), *(["--quick"] if options.quick else [])]
    for o in options.overrides:
        parts += ["--set", shlex.quote(o)]
    parts += ["--precision", options.precision, "--batch-size", str(options.batch_size), "-o",
              shlex.quote(str(results))]
    return " ".join(parts)


def pathology_note(paper: str, name: str, task: str, *, data_found: bool) -> str | None:
    """Where a papers' reproduction runs on one of their MRI tasks: why the papers' Pathology row is not beside it,
    and the command that gives it (``data_found``: whether PCam's files are where fedsafe looks for them)."""
    if paper not in ("crn", "fed-safe") or task not in ("meningioma", "glioma"):
        return None
    why = ("PCam's files were found on this machine but this reproduction was not run on them" if data_found else
           "its data, the official `camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5` files, is not on the "
           "machine these results come from")
    return (f"Pathology, the papers' third task (PatchCamelyon, 96x96 RGB patches), is not reproduced here: {why}. "
            f"With the files in DIR: `fedsafe reproduce {name} --task pcam --set task.data_root=DIR --set "
            "task.image_size=96 --set task.channels=3` (the paper's Pathology row is then printed beside ours).")


def run_facts(jobs: Sequence[Job], evaluations: Mapping[tuple[Path, Any], Evaluation],
              infos: Mapping[Path, Run], options: Options) -> str:
    """Seeds, device, precisions and wall time of the runs and attacks behind a reproduction, in one sentence."""
    runs = [infos[rd] for rd in dict.fromkeys(j.run_dir for j in jobs)]
    summaries = [i.summary for i in runs]
    measured = [evaluations[k] for k in dict.fromkeys((j.run_dir, j.measurement.spec) for j in jobs)]
    devices, precisions = _distinct(summaries, "device"), _distinct(summaries, "precision")
    train_s = sum(_float(s.get("seconds")) for s in summaries if s.get("seconds") is not None)
    attack_s = 0.0
    for ev in measured:
        f = ev.frame
        if {"attacker", "attack_seconds_per_batch", "batches"} <= set(f.columns):
            per = f.drop_duplicates("attacker")
            attack_s += float((per.attack_seconds_per_batch * per.batches).sum())
            attack_s += float(per.crn_seconds.sum()) if "crn_seconds" in per else 0.0
    seeds = sorted({j.seed for j in jobs})
    attack_precisions = _distinct([ev.record for ev in measured], "precision") or [options.precision]
    crn_precisions = _distinct(summaries, "crn_precision")
    crn = f", online CRN {', '.join(crn_precisions)}" if crn_precisions else ""
    threads = _distinct(summaries, "threads")
    threads_text = (f"; torch threads a training run {', '.join(threads)} (CPU sums depend on it: `--set threads=N` "
                    "sets it)" if threads else "")
    return (f"Seeds {seeds_text(seeds)} (fixed before the run; every seed's numbers are in summary.csv, learned or "
            f"not); profile {options.profile}; device {', '.join(devices) or 'n/a'}{threads_text}; "
            f"training precision {', '.join(precisions) or 'n/a'}, attacks {', '.join(attack_precisions)}{crn}; "
            "wall time: "
            f"{len(runs)} training run(s) {duration(train_s)} in all (as their summaries recorded, cached runs "
            f"included), attack crafting {duration(attack_s)} (timed batches and CRN replays).")


def _distinct(records: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """The distinct values of ``key`` in ``records``, sorted (records without one left out)."""
    return sorted({str(r[key]) for r in records if r.get(key)})


def _heatmaps(jobs: Sequence[Job], evaluations: Mapping[tuple[Path, Any], Evaluation]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[np.ndarray]] = {}
    for j in jobs:
        if not j.measurement.heatmap:
            continue
        ev = evaluations[(j.run_dir, j.measurement.spec)]
        spec = j.measurement.spec
        step = "" if spec.attack == "fgsm" else f", alpha {spec.alpha:g}"
        title = f"{j.measurement.training}: {spec.label}, eps {spec.eps:g}{step}"
        groups.setdefault((title, tuple(ev.record["matrices"]["attackers"])), []).append(
            np.asarray(ev.record["matrices"]["asr"], dtype=float))
    out = []
    for (title, attackers), mats in groups.items():
        stack = np.stack(mats)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(stack, axis=0) if not np.all(np.isnan(stack)) else stack[0]
        out.append({"title": title + (f" (mean of {len(mats)} seeds)" if len(mats) > 1 else ""),
                    "attackers": list(attackers), "metric": "ASR", "matrix": mean.tolist()})
    return out


def points_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per point of every verdict (``points.csv``): the claim, its status, then the point's numbers
    (:class:`~..verdicts.evidence.Point`; seeds space-separated, NaN left empty)."""
    cols = ["claim", "status", *(f.name for f in fields(Point))]
    rows = [{"claim": v.claim, "status": v.status, **asdict(p), "seeds": " ".join(map(str, p.seeds))}
            for v in verdicts for p in v.points]
    return pd.DataFrame(rows, columns=cols)


def built_markdown(built: Built, fig_entries: Sequence[Mapping[str, str]] = ()) -> list[str]:
    """The Markdown lines of a built reproduction: its tables with their notes, figures, verdicts, notes."""
    lines: list[str] = []
    for t in built.tables:
        lines += [f"## {t.title}", "", markdown_table(t.frame), ""]
        lines += [*t.notes, ""] if t.notes else []
    if fig_entries:
        lines += ["## Figures", "", *(f"![{f['caption']}]({f['png']}) ({f['svg']})" for f in fig_entries), ""]
    lines += ["## Do the claims hold here?", "", *(v.markdown() for v in built.verdicts), "", RULES, ""]
    for note in built.notes:  # a paragraph each: consecutive lines would run together in Markdown
        lines += [note, ""]
    return lines


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path.resolve())


def write_outputs(results: Path, rep: Reproduction, task: str, options: Options, jobs: Sequence[Job],
                  evaluations: Mapping[tuple[Path, Any], Evaluation], trainings: Mapping[str, ConfigDelta]
                  ) -> Written:
    """Build ``rep`` on ``task`` from its jobs' evaluations and write every output file (module docstring)."""
    folder = results / rep.name / task
    rows, frames = [], []
    infos: dict[Path, Run] = {}
    for j in jobs:
        ev = evaluations[(j.run_dir, j.measurement.spec)]
        info = infos.setdefault(j.run_dir, open_run(j.run_dir, missing_ok=True).read_records())
        rows.append(summary_row(reproduction=rep.name, task=task, seed=j.seed, measurement=j.measurement,
                                run_dir=j.run_dir, evaluation=ev, info=info, options=options))
        f = ev.frame.copy()
        for k, v in {"reproduction": rep.name, "task": task, "training": j.measurement.training,
                     **j.measurement.tag(), "profile": options.profile, "quick": options.quick,
                     "run_dir": str(j.run_dir)}.items():
            if k not in f.columns:  # a tag may repeat an attack setting (alpha): keep the frame's own column
                f.insert(0, k, [v] * len(f))
        frames.append(f)
    summary = pd.DataFrame(rows)
    runs: dict[str, Run] = {}
    for j in jobs:
        if j.seed == options.seeds[0] and j.measurement.training not in runs:
            runs[j.measurement.training] = infos[j.run_dir]
    inp = BuildInput(reproduction=rep, task=task, options=options, summary=summary, runs=runs, trainings=trainings)
    built = rep.build(inp)
    warnings = sorted({f"{Path(j.run_dir).name}: {w}" for j in jobs
                       for w in evaluations[(j.run_dir, j.measurement.spec)].record.get("sanity_warnings") or []})
    if warnings:  # Carlini et al.'s checks, run once per run by the transfer evaluation
        built = replace(built, notes=(*built.notes, "Sanity-check warnings (Carlini et al.): " + "; ".join(warnings)))
    pcam_root = default_data_root("pcam")
    pathology = pathology_note(rep.paper, rep.name, task, data_found=pcam_root is not None and pcam_root.exists())
    if pathology:
        built = replace(built, notes=(*built.notes, pathology))
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "rows.csv", pd.concat(frames, ignore_index=True).to_csv(index=False))
    write_text(folder / "summary.csv", summary.to_csv(index=False))
    if built.data is not None:
        write_text(folder / "table.csv", built.data.to_csv(index=False))
    fig_entries = []
    for stem, fig, caption in built.figures:
        png, svg = figs.save_figure(fig, folder / stem)
        fig_entries.append({"name": stem, "png": png.name, "svg": svg.name, "caption": caption})
    verdicts = [v.to_dict() for v in built.verdicts]
    write_json(folder / "verdicts.json", verdicts)
    write_text(folder / "points.csv", points_frame(built.verdicts).to_csv(index=False))
    setting = setting_text(inp, rep.setting(trainings))
    facts = run_facts(jobs, evaluations, infos, options)
    command = command_line(rep.name, task, options, results)
    title = f"# {rep.title} — {task}" + (" (QUICK)" if options.quick else "")
    md_path = folder / f"{rep.name}.md"
    write_text(md_path, "\n".join([title, "", setting, "", facts, "", f"Command: `{command}`", "",
                                   *built_markdown(built, fig_entries), FILES_NOTE, ""]))
    root = results.resolve()
    manifest = {
        "kind": "fedsafe-reproduction", "fedsafe_version": __version__, "name": rep.name, "title": rep.title,
        "paper": rep.paper, "task": task, "synthetic": task == "synthetic", "profile": options.profile,
        "seeds": list(options.seeds), "quick": options.quick, "overrides": list(options.overrides),
        "attack_precision": options.precision, "label": run_label(inp), "setting": setting, "facts": facts,
        "command": command,
        "trainings": {name: d.overrides() for name, d in trainings.items()},
        "tables": [{"title": t.title, "columns": [str(c) for c in t.frame.columns],
                    "rows": [[str(v) for v in r] for r in t.frame.itertuples(index=False)], "notes": list(t.notes)}
                   for t in built.tables],
        "figures": fig_entries, "verdicts": verdicts, "rules": RULES, "notes": list(built.notes),
        "heatmaps": _heatmaps(jobs, evaluations),
        "runs": {name: _relative(info.root, root) for name, info in runs.items()},
        "all_runs": sorted({_relative(j.run_dir, root) for j in jobs}),
        "files": {"rows": "rows.csv", "summary": "summary.csv", "table": "table.csv", "markdown": md_path.name,
                  "verdicts": "verdicts.json", "points": "points.csv"},
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json(folder / "manifest.json", manifest)
    return Written(rep.name, task, folder, md_path, folder / "manifest.json", built)
