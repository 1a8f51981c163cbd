"""The defaults derived from a config (fedsafe.defaults) are what the run uses and what the cost estimates predict:
each check compares the run's side and the estimate's side with an independent statement of the rule, and a scan
keeps the attack defaults from being written out again."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from fedsafe import build, defaults
from fedsafe.config import load_config
from fedsafe.defenses.adaptation import pgd_loss
from fedsafe.defenses.cost import defense_cost_summary
from fedsafe.reproduce.costs import split_sizes, train_passes

SRC = Path(__file__).resolve().parents[1] / "src" / "fedsafe"
SMALL = ["task.image_size=8", "task.synthetic_size=300", "splits.client_test_size=10"]


@pytest.mark.parametrize(("steps", "epochs", "j"), [(None, 3, 3), (None, 1, 1), (7, 3, 7)])
def test_crn_steps_is_j_or_the_local_epochs(steps, epochs, j):
    cfg = load_config(None, overrides=[f"crn.steps={'null' if steps is None else steps}",
                                       f"train.local_epochs={epochs}"])
    assert defaults.crn_steps(cfg) == j


@pytest.mark.parametrize("steps", [None, 4])
def test_the_cost_estimate_counts_the_runs_crn_steps(steps):
    """Online CRN adds N x sum(R) x j x |attack set| passes to the estimate, j as the run resolves it."""
    over = [*SMALL, "train.rounds=10", "train.local_epochs=2", f"crn.steps={'null' if steps is None else steps}"]
    off, on = load_config(None, overrides=over), load_config(None, overrides=[*over, "crn.enabled=true"])
    s = on.splits
    j = steps or 2
    assert train_passes(on, 300) - train_passes(off, 300) == pytest.approx(
        s.num_clients * sum(on.crn.windows) * j * s.client_test_size)


@pytest.mark.parametrize(("alpha", "expected"), [(None, 0.03 / 6), (0.004, 0.004)])
def test_the_defense_step_is_alpha_or_eps_over_6_in_the_run_and_its_cost_report(alpha, expected):
    cfg = load_config(None, overrides=["defense.name=client-adversarial-training", "defense.eps=0.03",
                                       f"defense.alpha={'null' if alpha is None else alpha}"])
    assert defaults.defense_alpha(cfg.defense) == pytest.approx(expected)
    assert pgd_loss(cfg.defense, "fp32").alpha == defaults.defense_alpha(cfg.defense)
    assert defense_cost_summary([], defense=cfg.defense)["alpha"] == defaults.defense_alpha(cfg.defense)


@pytest.mark.parametrize(("partition", "fraction"), [("iid", 0.2), ("shards", 0.2), ("iid", 1.0), ("dirichlet", 1.0)])
def test_the_server_set_estimate_is_the_runs_first_request(partition, fraction, monkeypatch):
    """The estimate's server set is the size the run asks the splits for first; the run keeps it when the largest
    client's round(f |D_i|) fits, and only ever raises it."""
    cfg = load_config(None, overrides=[*SMALL, f"splits.partition={partition}",
                                       f"splits.server_for_fraction={fraction}"])
    table, _ = build.load_table(cfg)
    n = len(table.labels)
    asked = []
    real = build._splits
    monkeypatch.setattr(build, "_splits", lambda c, t, size: asked.append(size) or real(c, t, size))
    splits, _ = build._server_size(cfg, table)
    _, estimate, glob = split_sizes(cfg, n)
    s = cfg.splits
    rest = n - round(s.global_test_size * n) - s.num_clients * s.client_test_size
    assert glob == round(s.global_test_size * n)
    assert asked[0] == estimate == int(fraction * rest // (s.num_clients + fraction))  # S = f (rest - S) / N
    assert len(splits.server) >= estimate
    largest = max(len(c) for c in splits.client_train)
    assert len(splits.server) >= round(fraction * largest)
    if len(asked) == 1:  # the first request fitted: the run's set is the estimate
        assert len(splits.server) == estimate


def test_the_server_set_estimate_without_a_fraction_is_server_size():
    for size, expected in [(0.1, 30), (25, 25)]:
        cfg = load_config(None, overrides=[*SMALL, f"splits.server_size={size}"])
        assert split_sizes(cfg, 300)[1] == expected
        assert defaults.server_set_request(cfg.splits, 300) == size


def test_the_margin_text_says_the_margin_the_run_applies():
    from fedsafe.training.trainer import did_not_learn

    points = int(defaults.LEARN_MARGIN_TEXT.split()[0])
    assert did_not_learn(0.5 + points / 100 - 1e-9, 0.5) and not did_not_learn(0.5 + points / 100 + 1e-9, 0.5)


# -- the attack defaults are written once ---------------------------------------------------------------------------

CALLERS = ("evaluation", "reproduce", "audit", "cli")
"""The packages that choose an attack's batch and precision for the user (the attack functions below them take
what they are given)."""
OWN_DEFAULTS = {("audit/mia.py", "precision")}
"""The membership audit's shadow models: a training precision, not an attack's."""


def _restated_attack_defaults(text: str) -> list[tuple[int, str]]:
    """(line, name) of every ``batch_size`` defaulting to 100 and ``precision``/``crn_precision`` defaulting to
    "fp32" (parameters, dataclass fields, ``typer.Option(...)`` first arguments)."""
    wanted = {"batch_size": defaults.ATTACK_BATCH_SIZE, "precision": defaults.ATTACK_PRECISION,
              "crn_precision": defaults.ATTACK_PRECISION}
    out = []

    def literal(node: ast.AST | None) -> object:
        if isinstance(node, ast.Call) and node.args:  # typer.Option(100, "--batch-size", ...)
            node = node.args[0]
        return node.value if isinstance(node, ast.Constant) else None

    for node in ast.walk(ast.parse(text)):
        pairs: list[tuple[str, ast.AST | None]] = []
        if isinstance(node, ast.arguments):
            pos = node.posonlyargs + node.args
            pairs += list(zip([a.arg for a in pos[len(pos) - len(node.defaults):]], node.defaults, strict=True))
            pairs += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            pairs.append((node.target.id, node.value))
        out += [(getattr(v, "lineno", 0), k) for k, v in pairs if k in wanted and literal(v) == wanted[k]
                and type(literal(v)) is type(wanted[k])]
    return out


def test_no_caller_writes_the_attack_defaults_again():
    bad = [f"{f.relative_to(SRC)}:{line}: {name}" for pkg in CALLERS for f in sorted((SRC / pkg).rglob("*.py"))
           for line, name in _restated_attack_defaults(f.read_text())
           if (str(f.relative_to(SRC)), name) not in OWN_DEFAULTS]
    assert not bad, "\n".join(bad)


def test_the_attack_default_detector_catches_each_form():
    text = ('def f(x, *, precision: str = "fp32", batch_size: int = 100): ...\n'
            'def g(batch_size=100): ...\n'
            'class O:\n    crn_precision: str = "fp32"\n    batch_size: int = 256\n'
            'def h(batch_size: int = typer.Option(100, "--batch-size")): ...\n'
            'def ok(precision: str = ATTACK_PRECISION, batch_size: int = ATTACK_BATCH_SIZE): ...\n')
    assert sorted(_restated_attack_defaults(text)) == [(1, "batch_size"), (1, "precision"), (2, "batch_size"),
                                                      (4, "crn_precision"), (6, "batch_size")]


def test_the_evaluation_entry_points_take_the_attack_defaults():
    from fedsafe.evaluation.transfer_evaluation import evaluate_transfer
    from fedsafe.reproduce.run_cache import RunCache

    for fn in (evaluate_transfer, RunCache.evaluate, RunCache.cached_evaluation):
        params = inspect.signature(fn).parameters
        assert params["batch_size"].default == defaults.ATTACK_BATCH_SIZE
        assert params["precision"].default == params["crn_precision"].default == defaults.ATTACK_PRECISION
