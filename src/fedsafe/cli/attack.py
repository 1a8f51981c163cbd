"""``fedsafe attack RUN_DIR``: every client attacks in turn from a trained run; print who fools whom.
``fedsafe crn-tables RUN_DIR``: the CRN paper's Tables I and II on that run.

The experiment modules are imported inside the commands so that ``fedsafe --help`` and the other commands start
without them."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.markdown import Markdown
from rich.table import Table

from ..attacks.registry import ADAPTIVE_ATTACKS, ATTACKS, QUERY_ATTACKS
from ..attacks.spec import (
    DEFAULT_ALPHA,
    DEFAULT_EOT_SAMPLES,
    DEFAULT_EPS,
    DEFAULT_SQUARE_QUERIES,
    DEFAULT_STEPS,
    DEFAULT_SURROGATES,
    DEFAULT_WINDOWS,
    AttackSpec,
    Start,
    sweep,
)
from ..config import TrainConfig
from ..defaults import ATTACK_BATCH_SIZE, ATTACK_PRECISION
from .choices import choice, literal_values
from .console import console, fail, out, progress_bars, usage_error

app = typer.Typer(add_completion=False)  # completion is the fedsafe group's (--install-completion)

PRECISIONS = literal_values(TrainConfig, "precision")


def _floats(text: str | None, name: str) -> list[float | None]:
    """A number or a comma-separated list of them; an empty item ("0.01,,0.03") is an error, never dropped."""
    if text is None:
        return [None]
    if not text.strip():
        raise usage_error(f"{name} is empty")
    items = [v.strip() for v in text.split(",")]
    if "" in items:
        raise usage_error(f"{name} has an empty item in {text!r}: give numbers separated by single commas")
    try:
        return [float(v) for v in items]
    except ValueError:
        raise usage_error(f"{name} must be a number or a comma-separated list of numbers, got {text!r}") from None


def _check_budgets(attack_name: str, eps: list[float | None], alpha: list[float | None]) -> None:
    """Refuse what the library accepts but no one means on the command line: eps 0 (no attack: every image is left
    as it is) and, for an iterative attack, a step alpha above the budget eps (every step is projected back)."""
    for e in eps:
        if e is not None and e == 0:
            raise usage_error("--eps 0 is no attack (every image stays as it is): give a budget in (0, 1]")
    if attack_name == "fgsm":
        return
    for e in eps:
        for a in alpha:
            if e is not None and a is not None and a > e:
                raise usage_error(f"--alpha {a:g} is above --eps {e:g}: a step larger than the budget is projected "
                                  "back at once; give --alpha <= --eps")


def _steps(attack_name: str, alpha: str | None, steps: int | None, queries: int | None) -> tuple[str | None, int]:
    """The step size (text) and the steps of the chosen attack; Square's queries are its steps. A setting the attack
    does not take is refused, never ignored."""
    if attack_name in QUERY_ATTACKS:
        if alpha is not None or steps is not None:
            raise usage_error(f"--alpha and --steps are not {attack_name}'s settings: it takes --queries (default "
                              f"{DEFAULT_SQUARE_QUERIES})")
        return None, DEFAULT_SQUARE_QUERIES if queries is None else queries
    if queries is not None:
        raise usage_error(f"--queries is a setting of the gradient-free attacks ({', '.join(QUERY_ATTACKS)}), not "
                          f"{attack_name}'s: give --steps")
    return (f"{DEFAULT_ALPHA:g}" if alpha is None else alpha), DEFAULT_STEPS if steps is None else steps


def _adaptive(attack_name: str, samples: int | None, noise_std: float | None,
              surrogates: int | None) -> dict[str, object]:
    """The adaptive attack's own settings (a default only when the flag is absent, never for a 0), and a refusal of
    a setting the chosen attack does not take."""
    if attack_name != "eot-pgd" and (samples is not None or noise_std is not None):
        raise usage_error(f"--samples and --noise-std are eot-pgd settings, not {attack_name}'s")
    if attack_name != "ensemble-pgd" and surrogates is not None:
        raise usage_error(f"--surrogates is an ensemble-pgd setting, not {attack_name}'s")
    if attack_name == "eot-pgd":
        return {"samples": DEFAULT_EOT_SAMPLES if samples is None else samples, "noise_std": noise_std}
    if attack_name == "ensemble-pgd":
        return {"surrogates": DEFAULT_SURROGATES if surrogates is None else surrogates}
    return {}


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _print_result(res) -> None:
    s, spec, m = res.summary, res.spec, res.matrices
    step = "" if spec.attack == "fgsm" else f", {spec.steps} queries" if spec.query else f", alpha {spec.alpha:g}"
    out.print(f"[bold]{spec.label}[/]: eps {spec.eps:g}{step}, start {spec.start}, seed {spec.seed}, labels "
              f"{spec.labels}", highlight=False)
    tab = Table(title="ASR (attacker x target)")
    tab.add_column("attacker")
    for c in range(m.asr.shape[1]):
        tab.add_column(f"client {c}", justify="right")
    for i, a in enumerate(m.attackers):
        tab.add_row(f"client {a}", *[f"[bold]{_pct(v)}[/]" if c == a else _pct(v) for c, v in enumerate(m.asr[i])])
    out.print(tab)
    sources = sorted(set(res.record["start_source"].values()))
    out.print(f"ASR self {_pct(s.asr_self)}  ASR avg (benign) {_pct(s.asr_avg_benign)}  AASR {_pct(s.aasr)}  "
              f"AETR {_pct(s.aetr)}  clean acc {_pct(s.clean_acc)}  attack acc {_pct(s.attack_acc)}", highlight=False)
    passes = (f"at most {int(res.frame['forward_passes_per_image'].max())} forward passes an image, no gradient"
              if spec.query else f"{spec.steps} forward/backward passes an image")
    out.print(f"literal ASR (all n): self {_pct(s.asr_self_literal)}, avg (benign) {_pct(s.asr_avg_benign_literal)}, "
              f"AASR {_pct(s.aasr_literal)};  {res.record['attack_seconds_per_batch']:.3f} s a batch of "
              f"{res.record['batch_size']}, {passes}; start: {', '.join(sources)}", highlight=False)
    out.print(f"written: {res.csv_path} and {res.json_path.name}", highlight=False)


def _start(name: str, eps: float | None, alpha: float | None) -> Start:
    start = Start.parse(name)
    if start.kind != "crn":
        return start
    return Start.crn(start.window, eps=eps, alpha=alpha, final=start.final)  # type: ignore[arg-type]


@app.command()
def attack(
    run_dir: Path = typer.Argument(..., help="A complete run directory (fedsafe train)."),
    attack_name: str = typer.Option("pgd", "--attack", "-a",
                                    click_type=choice([*ATTACKS, *ADAPTIVE_ATTACKS, *QUERY_ATTACKS]),
                                    help="eot-pgd: an attacker who knows the downlink noise; ensemble-pgd: the "
                                    "copies it received; square: gradient-free (logits only, --queries), for "
                                    "models whose gradients mislead PGD."),
    eps: str = typer.Option(f"{DEFAULT_EPS:g}", "--eps", help="L-inf budget in [0, 1] pixels; a list sweeps: "
                                                                "0.01,0.03,0.05"),
    alpha: str = typer.Option(None, "--alpha", help=f"Step size (BIM/PGD; default {DEFAULT_ALPHA:g}); a list "
                                                    "sweeps."),
    steps: int = typer.Option(None, "--steps", "-k", help=f"Number of steps K (BIM/PGD; default {DEFAULT_STEPS})."),
    queries: int = typer.Option(None, "--queries", help=f"square: queries (iterations; default "
                                                        f"{DEFAULT_SQUARE_QUERIES})."),
    start: str = typer.Option(None, "--start",
                              help="zero, random or crnR (crn5, crn10); a list sweeps. Default: random for "
                                   "PGD and Square (its own stripes, the only start it takes), zero otherwise."),
    crn_eps: float = typer.Option(None, "--crn-eps", help="Budget of a CRN start (default: the run's crn.eps, "
                                                          "the online buffers'); projected into --eps."),
    crn_alpha: float = typer.Option(None, "--crn-alpha", help="Step of a CRN start (default: the run's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random start."),
    precision: str = typer.Option(ATTACK_PRECISION, "--precision", click_type=choice(PRECISIONS),
                                 help="fp32 (exact), bf16, or auto (bf16 where fast)."),
    batch_size: int = typer.Option(ATTACK_BATCH_SIZE, "--batch-size", help="Images attacked at a time."),
    labels: str = typer.Option("pred", "--labels", click_type=choice(literal_values(AttackSpec, "labels")),
                               help="pred (attacker's own predictions) or true."),
    centre_grad: bool = typer.Option(False, "--centre-grad", help="Centre the attack's gradients."),
    sanity: bool = typer.Option(True, "--sanity/--no-sanity", help="Run the sanity checks (once per run)."),
    samples: int = typer.Option(None, "--samples",
                                help=f"eot-pgd: K noisy copies a step (default {DEFAULT_EOT_SAMPLES})."),
    noise_std: float = typer.Option(None, "--noise-std", help="eot-pgd: s_D (default: the run's downlink noise)."),
    surrogates: int = typer.Option(None, "--surrogates",
                                   help=f"ensemble-pgd: R, the last rounds' copies (default {DEFAULT_SURROGATES})."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: the run's train.device)."),
) -> None:
    """Each client attacks from its own final model and test set; every client's model is evaluated on it."""
    from ..evaluation.run_context import load_context
    from ..evaluation.transfer_evaluation import evaluate_transfer
    from ..runs.run import open_run
    from ..training.trainer import torch_threads

    names = (start or ("random" if attack_name in ("pgd", "eot-pgd", "ensemble-pgd", *QUERY_ATTACKS)
                       else "zero")).split(",")
    alpha, steps = _steps(attack_name, alpha, steps, queries)
    eps_values, alpha_values = _floats(eps, "--eps"), _floats(alpha, "--alpha")
    _check_budgets(attack_name, eps_values, alpha_values)
    adaptive = _adaptive(attack_name, samples, noise_std, surrogates)
    try:  # the settings alone: a value the attacks do not take is a usage error
        starts = [_start(s.strip(), crn_eps, crn_alpha) for s in names]
        specs = sweep(attack_name, eps=eps_values, alpha=alpha_values, steps=steps, start=starts, seed=seed,
                      labels=labels, centre_grad=centre_grad, **adaptive)
    except ValueError as e:
        raise usage_error(" ".join(str(e).split())) from None
    try:
        with progress_bars() as prog:
            ctx = load_context(open_run(run_dir), progress=prog, device=device)
            with torch_threads(ctx.cfg.threads):
                results = evaluate_transfer(ctx, specs, precision=precision, batch_size=batch_size, sanity=sanity,
                                            progress=prog)
    except (ValueError, FileNotFoundError) as e:
        raise fail(" ".join(str(e).split())) from None
    label = " \\[synthetic]" if ctx.data.synthetic else ""
    console.print(f"{ctx.data.task}{label}: {ctx.num_clients} clients, {len(results)} attack configuration(s)")
    for w in results[0].record["sanity_warnings"]:
        console.print(f"[yellow]sanity check:[/] {w}", highlight=False)
    for res in results:
        _print_result(res)


@app.command("crn-tables")
def crn_tables_command(
    run_dir: Path = typer.Argument(..., help="A complete run directory trained with crn.enabled."),
    eps: float = typer.Option(DEFAULT_EPS, "--eps", help="L-inf budget (the paper's by default)."),
    alpha: float = typer.Option(DEFAULT_ALPHA, "--alpha", help="PGD step size (the paper's by default)."),
    windows: str = typer.Option(",".join(map(str, DEFAULT_WINDOWS)), "--windows",
                                help="CRN windows R (the paper's by default)."),
    seed: int = typer.Option(0, "--seed", help="Seed of PGD's random start."),
    dataset: str = typer.Option("Meningioma", "--paper-dataset", help="The paper's row: Meningioma, Glioma, "
                                                                       "Pathology."),
    precision: str = typer.Option(ATTACK_PRECISION, "--precision", click_type=choice(PRECISIONS),
                                 help="fp32 (exact), bf16, or auto (bf16 where fast)."),
) -> None:
    """The CRN paper's Table I (ACC, AASR, time) and Table II (AETR), ours beside the paper's, as Markdown."""
    from ..evaluation.run_context import load_context
    from ..reproduce.reproductions.crn_tables import crn_tables
    from ..runs.run import open_run
    from ..training.trainer import torch_threads

    try:
        ws = tuple(int(w) for w in windows.split(","))
    except ValueError:
        raise usage_error(f"--windows must be a comma-separated list of integers, got {windows!r}") from None
    try:
        with progress_bars() as prog:
            ctx = load_context(open_run(run_dir), progress=prog)
            with torch_threads(ctx.cfg.threads):
                tables = crn_tables(ctx, windows=ws, eps=eps, alpha=alpha, seed=seed, dataset=dataset,
                                    precision=precision, progress=prog)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise fail(" ".join(str(e).strip("'\"").split())) from None
    out.print(Markdown(tables.markdown))
    console.print(f"written: {tables.path}")
