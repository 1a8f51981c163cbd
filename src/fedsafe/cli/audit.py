"""``fedsafe audit RUN_DIR``: one finished run audited on three axes (design §13): what an insider's attack does to
the other clients (PGD, PGD+CRN10, EOT-PGD against the run's own noise), what privacy the noise buys, measured
(membership inference, server's and insider's view) and accounted (epsilon under both sensitivities), and what
it costs in clean accuracy. Writes ``RUN/audit/audit.html`` and ``RUN/audit/audit.json``; everything expensive is
cached by its settings, so a second call reads it back.

The experiment modules are imported inside the command so that ``fedsafe --help`` starts without them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from ..attacks.spec import DEFAULT_EOT_SAMPLES, DEFAULT_EPS
from ..config import TrainConfig
from ..defaults import LEARN_MARGIN_TEXT
from .choices import choice, literal_values
from .console import console, fail, out, progress_bars

if TYPE_CHECKING:
    from ..audit.runner import AuditSettings

app = typer.Typer(add_completion=False)  # completion is the fedsafe group's (--install-completion)


def _ints(text: str | None, name: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise fail(f"{name} must be an integer or a comma-separated list of integers, got {text!r}") from None
    if not values:
        raise fail(f"{name} is empty")
    return values


@app.command()
def audit(
    run_dir: Path = typer.Argument(..., help="A complete run directory (fedsafe train, or RESULTS/runs/...)."),
    eps: float = typer.Option(None, "--eps",
                              help=f"L-inf budget of every attack in [0, 1] pixels (default {DEFAULT_EPS:g})."),
    steps: int = typer.Option(None, "--steps", "-k", help="Attack steps (default 20; --quick 10)."),
    alpha: float = typer.Option(None, "--alpha", help="Step size (default 2.5 eps / steps)."),
    eot: str = typer.Option(None, "--eot", help="K values of EOT-PGD, comma-separated, e.g. 1,8,32 (default "
                                                f"{DEFAULT_EOT_SAMPLES}; --quick 2)."),
    shadows: int = typer.Option(None, "--shadows", help="Shadow models a view for LiRA (default 4; --quick 2)."),
    shadow_epochs: int = typer.Option(None, "--max-shadow-epochs",
                                      help="Cap on a shadow's epochs (min(T x E, cap); default 30; --quick 5)."),
    insider_rounds: int = typer.Option(None, "--insider-rounds",
                                       help="The insider also scores with its last R received copies (default 0)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the random starts and the EOT noise (default 0)."),
    precision: str = typer.Option(None, "--precision", click_type=choice(literal_values(TrainConfig, "precision")),
                                  help="auto (default: bf16 where fast), fp32 (--full) or bf16."),
    membership: bool = typer.Option(True, "--membership/--no-membership", help="Run the membership inference."),
    masking: bool = typer.Option(True, "--masking/--no-masking", help="Run the gradient-masking checks."),
    quick: bool = typer.Option(False, "--quick", help="A smoke test: fewer steps, K = 2, 2 short shadows."),
    full: bool = typer.Option(False, "--full", help="The full budget: EOT K = 8, 4 shadows of <= 30 epochs, masking "
                                                    "on 100 images, fp32 (default: K = 2, 2 shadows of <= 10 epochs, "
                                                    "50 images, bf16 where fast)."),
    masking_images: int = typer.Option(None, "--masking-images", help="Images a client of the masking checks "
                                                                      "(default 50; --full 100)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the cost estimate, then stop."),
    data: Path = typer.Option(None, "--data", help="A recorded Flower run's audit data (.npz: test_x_<i>, train_x_<i>, "
                                                  "heldout_x, server_x and their _y; fedsafe.flower.audit_data)."),
    model: str = typer.Option(None, "--model", help="A recorded run's model factory package.module:factory "
                                                    "(default: the one it recorded)."),
    model_kwargs: str = typer.Option(None, "--model-kwargs", help="JSON keywords of --model's factory."),
    sets: list[str] = typer.Option([], "--set", help="A recorded run's shadow recipe, train.KEY=VALUE (repeatable)."),
) -> None:
    """Audit a finished federation: the insider transfer matrix, membership inference, epsilon and clean accuracy,
    as one HTML page and a JSON summary in RUN/audit/."""
    from ..audit.page import write_audit_html
    from ..audit.runner import AuditSettings, estimate, run_audit
    from ..evaluation.run_context import load_context
    from ..flower.recording import is_recording
    from ..runs.layout import RunLayout
    from ..runs.run import open_run
    from ..training.trainer import torch_threads

    try:
        settings = AuditSettings.of(eps=eps, steps=steps, alpha=alpha, eot=_ints(eot, "--eot"), shadows=shadows,
                                    max_shadow_epochs=shadow_epochs, insider_rounds=insider_rounds, seed=seed,
                                    precision=precision, membership=membership, masking=masking, quick=quick,
                                    full=full, masking_images=masking_images)
    except ValueError as e:
        raise fail(" ".join(str(e).split())) from None
    if data is not None or model is not None or is_recording(run_dir):
        return _audit_recorded(run_dir, settings, data=data, model=model, model_kwargs=model_kwargs, sets=sets,
                               seed=seed or 0, dry_run=dry_run)
    try:
        with progress_bars() as prog:
            ctx = load_context(open_run(run_dir), progress=prog, complete=True)
            if not ctx.learned:
                console.print("[bold red]WARNING: this run did not learn[/] (its global model is within "
                              f"{LEARN_MARGIN_TEXT} of the majority-class rate): its attack and membership "
                              "numbers say nothing.",
                              highlight=False)
            for line in estimate(ctx, settings).lines():
                console.print(escape(line), highlight=False)
            if dry_run:
                return
            with torch_threads(ctx.cfg.threads):
                summary = run_audit(ctx, settings, progress=prog)
    except (ValueError, FileNotFoundError) as e:
        raise fail(" ".join(str(e).split())) from None
    html = write_audit_html(summary, RunLayout(run_dir).audit_page)
    label = " \\[synthetic]" if summary["synthetic"] else ""
    quick_label = {"quick": " (QUICK)", "full": " (full)"}.get(summary.get("level", ""), "")
    out.rule(f"audit of {escape(str(run_dir))}: {escape(summary['task'])}{label}{quick_label}")
    _print_model(summary)
    for s in summary["sentences"]:
        out.print(f"- {escape(s)}", highlight=False)
    _print_verdicts(summary)
    c = summary["cached"]
    console.print(f"cached: {c['attacks']} of {c['attack_specs']} attack evaluation(s), masking "
                  f"{'yes' if c['masking'] else 'no'}, membership {'yes' if c['membership'] else 'no'}; "
                  f"{summary['seconds']['total']:.1f} s", highlight=False)
    console.print(f"written: {html} and {html.with_suffix('.json').name}", highlight=False)


def _print_model(summary: dict) -> None:
    from ..audit.page import model_text

    out.print(f"model: {escape(model_text(summary.get('model')))}", highlight=False, soft_wrap=True)


def _print_verdicts(summary: dict) -> None:
    verdicts = summary.get("verdicts") or {}
    if verdicts:
        out.print("Verdicts:", highlight=False)
        for k, v in verdicts.items():
            out.print(f"  {escape(k)}: {escape(v)}", highlight=False)


def _audit_recorded(run_dir: Path, settings: AuditSettings, *, data: Path | None, model: str | None,
                    model_kwargs: str | None, sets: list[str], seed: int, dry_run: bool) -> None:
    """The audit of a run recorded from a Flower app (fedsafe.flower.recorder) with the user's data and model."""
    import json

    from ..audit.page import write_audit_html
    from ..audit.runner import estimate
    from ..flower.audit_data import load_audit_data
    from ..flower.recording import audit_recorded, is_recording, load_recorded
    from ..runs.layout import RunLayout

    if not is_recording(run_dir):
        raise fail(f"{run_dir}: --data and --model are for a run recorded from a Flower app (RecordingStrategy); "
                   "this is not one")
    if data is None:
        raise fail(f"{run_dir} is a recorded Flower run: name its audit data with --data FILE.npz")
    try:
        kwargs = json.loads(model_kwargs) if model_kwargs is not None else None
    except ValueError:
        raise fail(f"--model-kwargs is not valid JSON: {model_kwargs!r}") from None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise fail(f"--model-kwargs must be a JSON object, got {model_kwargs!r}")
    try:
        audit_data = load_audit_data(data, membership=settings.membership)
        common = {"data": audit_data, "model": model, "model_kwargs": kwargs, "overrides": sets, "seed": seed}
        with progress_bars() as prog:
            if dry_run:
                for line in estimate(load_recorded(run_dir, **common).context, settings).lines():
                    console.print(escape(line), highlight=False)
                return
            summary = audit_recorded(run_dir, settings=settings, data_path=data, progress=prog, **common)
    except (ValueError, FileNotFoundError) as e:
        raise fail(" ".join(str(e).split())) from None
    html = write_audit_html(summary, RunLayout(run_dir).audit_page)
    out.rule(f"audit of {escape(str(run_dir))}: recorded Flower run{' (QUICK)' if summary['quick'] else ''}")
    _print_model(summary)
    for s in summary["sentences"]:
        out.print(f"- {escape(s)}", highlight=False)
    _print_verdicts(summary)
    console.print(f"written: {html} and {html.with_suffix('.json').name}", highlight=False)
