"""The setup part of the HTML report: the data report of each task, the model, profile and precision, and one row
per training run with its defense, the noise it used (its privacy report: hand-set or calibrated), the (epsilon,
delta) the accountant gives and its cost. Every run is read through :func:`fedsafe.runs.open_run`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..defaults import LEARN_MARGIN_TEXT
from ..names import PER_CLIENT_DEFENSES
from ..runs.layout import CONFIG
from ..runs.run import Run, open_run
from .elements import esc, num, pct, table

__all__ = ["setup_html"]

def data_report(rep: dict[str, Any]) -> str:
    if not rep:
        return '<p class="note">No data report.</p>'
    parts = [f"<p><strong>{esc(rep.get('task'))}</strong>: {esc(rep.get('source'))}"
             + (' <span class="badge synthetic">synthetic: not real data</span>' if rep.get("synthetic") else "")
             + "</p>"]
    counts = rep.get("counts") or {}
    if counts:
        classes = sorted({c for per in counts.values() for c in per})
        parts.append("<p class=\"note\">Files read per source split and class:</p>" + table(
            ["split", *classes], [[s, *[per.get(c, 0) for c in classes]] for s, per in counts.items()]))
    dup = rep.get("duplicates") or {}
    kept = rep.get("kept") or {}
    parts.append(f"<p>Duplicates removed: {esc(', '.join(f'{k}: {v}' for k, v in dup.items()) or 'none')}. "
                 f"Kept after de-duplication: {esc(', '.join(f'{k}: {v}' for k, v in kept.items()))} "
                 f"({sum(kept.values()) if kept else 0} images). Unreadable files: {len(rep.get('unreadable') or [])}."
                 "</p>")
    splits = rep.get("splits") or {}
    if splits:
        classes = sorted({c for per in splits.values() for c in per})
        parts.append("<p class=\"note\">Disjoint sets drawn by seed (global test, server, each client's attack/test "
                     "and training set):</p>" + table(["set", *classes, "total"], [
                         [s, *[per.get(c, 0) for c in classes], sum(per.values())] for s, per in splits.items()]))
    for n in rep.get("notes") or []:
        parts.append(f'<p class="note">{esc(n)}</p>')
    pre = rep.get("preprocessing") or {}
    if pre:
        parts.append(f'<p class="note">Preprocessing: {esc(", ".join(f"{k} {v}" for k, v in pre.items()))}</p>')
    return "".join(parts)


def model_line(info: Run) -> str:
    """The model, profile, training and precision of a run (one with a config)."""
    cfg, summ = info.config, info.summary
    if cfg is None:
        raise ValueError(f"{info.root}: not a fedsafe run directory (no readable {CONFIG})")
    model, tr = summ.get("model") or {}, cfg.train
    macs = model.get("macs_per_image")
    width = model.get("width", cfg.model.width)
    # a model the user brings (monai:<Network>, package.module:factory): its class and keywords, no paper width
    shape = f"width {esc(width)}" if width is not None else (
        f"({esc(model.get('class'))}, {esc(json.dumps(model.get('kwargs', cfg.model.kwargs), sort_keys=True))})")
    return (f"Model {esc(model.get('name', cfg.model.name))} {shape} on {esc(model.get('image_size'))}x"
            f"{esc(model.get('image_size'))}x{esc(model.get('channels'))} images, {esc(model.get('parameters'))} "
            f"parameters, {num(macs / 1e6 if macs else None)} MMAC an image; profile {esc(cfg.profile)}; "
            f"{esc(tr.rounds)} rounds x {esc(tr.local_epochs)} local epochs, {esc(tr.optimizer)} "
            f"lr {esc(tr.lr)}, batch {esc(tr.batch_size)}; training precision "
            f"{esc(summ.get('precision', tr.precision))}; torch {esc(summ.get('torch'))}, "
            f"{esc(summ.get('threads'))} threads, fedsafe {esc(summ.get('fedsafe_version'))}.")


def epsilon(priv: dict[str, Any]) -> str:
    pld = priv.get("pld") or {}
    if not pld:
        return "n/a"
    return (f"{num(pld.get('epsilon'))} (uplink {num(pld.get('epsilon_uplink'))}, downlink "
            f"{num(pld.get('epsilon_downlink'))})")


def runs_table(runs: dict[Path, list[str]], infos: dict[Path, Run], root: Path | None) -> str:
    rows = []
    for rd, names in runs.items():
        info = infos[rd]
        cfg, summ, priv, noise = info.config, info.summary, info.privacy, info.noise()
        if cfg is None:  # not a run (moved or deleted): nothing to show
            continue
        d = cfg.defense
        cost = priv.get("defense_cost") or {}
        defense = d.name + (f" (f = {d.fraction})" if d.name in PER_CLIENT_DEFENSES else "")
        name = str(rd.relative_to(root)) if root is not None and rd.is_relative_to(root) else str(rd)
        learned = summ.get("learned")
        rejected = len(summ.get("rejected_uploads") or [])
        rows.append([", ".join(names), name, cfg.seed, defense, noise.how, num(noise.downlink),
                     num(noise.clip) if noise.clip else "none", num(noise.uplink),
                     epsilon(priv), priv.get("delta", "n/a"), pct(summ.get("global_acc")),
                     "n/a" if learned is None else ("yes" if learned else "NO: did not learn"), rejected,
                     num((cost.get("server") or {}).get("passes"), 6), num(summ.get("seconds"), 3)])
    return table(["used by", "run directory", "seed", "defense", "noise", "s_D", "clip C", "s_U",
                  "epsilon (PLD; uplink, downlink)", "delta", "global acc", "learned", "rejected uploads",
                  "server defense passes", "train s"], rows)


def setup_html(runs: dict[Path, list[str]], root: Path | None) -> str:
    infos = {rd: open_run(rd, missing_ok=True).read_records() for rd in runs}
    existing = {rd: i for rd, i in infos.items() if i.exists}
    if not existing:
        return '<p class="note">The run directories are not here (moved or deleted): no setup to show.</p>'
    out = []
    by_task: dict[str, Path] = {}
    for rd, info in existing.items():
        by_task.setdefault(info.config.task.name, rd)  # type: ignore[union-attr]
    for task, rd in by_task.items():
        out.append(f"<h3>Data: {esc(task)}</h3>{data_report(existing[rd].data_report)}")
    models = {}
    for rd, info in existing.items():
        models.setdefault(model_line(info), []).append(rd)
    out.append("<h3>Model, profile and precision</h3>" + "".join(f"<p>{m}</p>" for m in models))
    out.append("<h3>Training runs, privacy and defense cost</h3><p class=\"note\">epsilon: what the run's noise "
               "really gives by the accountant (PLD, composed over the rounds; 'inf' without clipping or noise), at "
               "the delta shown; s_D downlink noise, s_U uplink noise, C uplink clip: the values the run used "
               "(noise: hand-set, or calibrated by NbAFL for a target epsilon). learned: the global model ended more "
               f"than {LEARN_MARGIN_TEXT} above the majority-class rate of its test set (design §11); a run that did "
               "not learn "
               "never enters a verdict. rejected uploads: non-finite (or outlying, as configured) client updates "
               "the server refused, named in the run's summary.</p>"
               + runs_table({rd: runs[rd] for rd in existing}, existing, root))
    return "".join(out)
