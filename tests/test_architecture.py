"""The package's layout: the import graph (layers, no circle, no hidden in-function imports in library code), no
source file over 400 lines, no package over 20% of the source, no module file name in two packages and no module that
only re-exports. Read from the modules' own text (ast)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fedsafe"
# layers, lowest first: a module never imports one of a higher layer. The base is the name lists every registry and the
# config's choices share (names), the one YAML reader (yaml12) and the one JSON policy (jsonsafe): they import no
# fedsafe module at all. config is the validated settings (pydantic, YAML and the base only); the low layers are the
# algorithms (verdicts: the statistics that decide whether a claim holds) and the run store; the middle one
# builds a run from a config (build), trains it (training) and evaluates it (evaluation); the high one is what a user
# runs: reproductions, the audit, the report, the Flower apps and the CLI.
BASE = ("names", "yaml12", "jsonsafe")
CONFIG = ("config",)
LOW = ("federation", "attacks", "defenses", "privacy", "metrics", "verdicts", "data", "models", "runs", "device",
       "precision", "progress", "seeding", "hardware", "profiles", "defaults")
MIDDLE = ("build", "training", "evaluation")
HIGH = ("reproduce", "audit", "cli", "flower", "report")
LAYERS = (BASE, CONFIG, LOW, MIDDLE, HIGH)
# lazy imports allowed in functions: the CLI keeps `fedsafe --help` fast (torch and Flower load on use), and
# matplotlib is only needed by the figures
LAZY_OK_PACKAGES = ("cli",)
LAZY_OK_MODULES = ("matplotlib",)


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        name = ".".join(f.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        out[name] = f
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported fedsafe module, inside a function?) for every import of ``name``."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    in_func: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_func.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = pkg
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            target = (base + ("." + node.module if node.module else "")) if node.level else (node.module or "")
            cands = [target + "." + a.name for a in node.names if target + "." + a.name in mods] or [target]
        elif isinstance(node, ast.Import):
            cands = [a.name for a in node.names]
        else:
            continue
        for c in cands:
            out.append((c, id(node) in in_func))
    return out


@pytest.fixture(scope="module")
def graph():
    mods = _modules()
    return mods, {m: _imports(m, f, mods) for m, f in mods.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(module: str) -> int | None:
    """The module's layer (0 base, 1 config, 2 low, 3 middle, 4 high), None for the package itself (``fedsafe``)."""
    return next((i for i, layer in enumerate(LAYERS) if _layer(module) in layer), None)


def test_every_package_and_module_has_a_layer():
    tops = {f.relative_to(SRC).parts[0].removesuffix(".py") for f in SRC.glob("*") if f.name != "__init__.py"
            and (f.suffix == ".py" or (f / "__init__.py").exists())}
    assert tops, "no package found: SRC is wrong"
    assert not sorted(t for t in tops if _rank(f"fedsafe.{t}") is None), "a package without a layer: add it to LAYERS"


def _upward_imports(imports: dict[str, list[tuple[str, bool]]]) -> list[tuple[str, str]]:
    return [(m, t) for m, ts in imports.items() for t, _ in ts if t.startswith("fedsafe.")
            and _rank(m) is not None and _rank(t) is not None and _rank(t) > _rank(m)]


def test_no_layer_imports_a_higher_one(graph):
    """config imports no other fedsafe module, the low layers no builder or runner, the middle no runner."""
    mods, imports = graph
    bad = _upward_imports(imports)
    assert not bad, f"imports of a higher layer: {bad[:5]}"


def test_the_base_imports_no_fedsafe_module(graph):
    """names, yaml12 and jsonsafe sit below the config: they may import nothing of fedsafe, so nothing can hide a
    second list of names behind them."""
    mods, imports = graph
    base = [m for m in imports if _layer(m) in BASE]
    assert sorted(base) == ["fedsafe.jsonsafe", "fedsafe.names", "fedsafe.yaml12"], "the base modules are not found"
    bad = [(m, t) for m in base for t, _ in imports[m] if t.startswith("fedsafe")]
    assert not bad, f"the base imports fedsafe modules: {bad}"


def test_upward_import_check_catches_the_base_importing_config():
    fake = {"fedsafe.names": [("fedsafe.config", False)], "fedsafe.config": [("fedsafe.names", False)]}
    assert _upward_imports(fake) == [("fedsafe.names", "fedsafe.config")]


def test_upward_import_check_catches_config_importing_data():
    fake = {"fedsafe.config": [("fedsafe.data.tasks", False), ("pydantic", False)],
            "fedsafe.evaluation.results": [("fedsafe.reproduce.outputs", False), ("fedsafe.training.trainer", False)],
            "fedsafe.cli.train": [("fedsafe.training.trainer", False)]}
    assert _upward_imports(fake) == [("fedsafe.config", "fedsafe.data.tasks"),
                                     ("fedsafe.evaluation.results", "fedsafe.reproduce.outputs")]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan): every import circle, each once."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_circle(graph):
    mods, imports = graph
    edges = {m: {t for t, _ in ts if t in mods and t != m and mods[t].name != "__init__.py"}
             for m, ts in imports.items() if mods[m].name != "__init__.py"}
    cycles = _cycles(edges)
    assert not cycles, f"import circles: {cycles}"


def _package_edges(imports: dict[str, list[tuple[str, bool]]]) -> dict[str, set[str]]:
    """Which top-level package imports which (``attacks`` -> ``models``), from the module imports."""
    edges: dict[str, set[str]] = {}
    for m, ts in imports.items():
        for t, _ in ts:
            if t.startswith("fedsafe.") and _layer(m) and _layer(t) and _layer(t) != _layer(m):
                edges.setdefault(_layer(m), set()).add(_layer(t))
    return edges


def test_no_import_circle_between_packages(graph):
    """Two packages never import each other, even through different modules (audit.runner -> reproduce.costs while
    reproduce.x -> audit.mia is a circle of concepts, though no module circle): each folder is one concept, and a
    concept is either below another or above it."""
    mods, imports = graph
    cycles = _cycles(_package_edges(imports))
    assert not cycles, f"circles between packages: {cycles}"


def test_package_circle_check_catches_a_circle_through_different_modules():
    fake = {"fedsafe.audit.runner": [("fedsafe.reproduce.costs", False)],
            "fedsafe.reproduce.tables": [("fedsafe.audit.mia", False), ("fedsafe.models.cnn", False)],
            "fedsafe.models.cnn": [("torch", False)]}
    assert _cycles(_package_edges(fake)) == [["audit", "reproduce"]]
    del fake["fedsafe.audit.runner"]
    assert _cycles(_package_edges(fake)) == []


def test_no_import_inside_a_function_in_library_code(graph):
    mods, imports = graph
    bad = [(m, t) for m, ts in imports.items() for t, inside in ts
           if inside and _layer(m) not in LAZY_OK_PACKAGES and not t.startswith(LAZY_OK_MODULES)]
    assert not bad, f"in-function imports: {bad[:8]}"


def test_no_source_file_over_400_lines():
    big = {str(f.relative_to(SRC)): n for f in SRC.rglob("*.py") if (n := len(f.read_text().splitlines())) > 400}
    assert not big, big


DESIGN = SRC.parents[1] / "docs" / "design.md"
OUTSIDE_REFERENCE = re.compile(r"\bSPEC\b|\b[Ii]ssues?\s+\d+")
DESIGN_CITATION = re.compile(r"[Dd]esign §(§?)(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?")


def _source_texts() -> dict[str, str]:
    """Every text file of the package (modules, profiles, templates), by its path under ``src/fedsafe``."""
    out = {}
    for f in sorted(SRC.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            try:
                out[str(f.relative_to(SRC))] = f.read_text()
            except UnicodeDecodeError:
                continue
    return out


def test_sources_cite_the_design_not_outside_documents():
    """The source cites docs/design.md, never a document outside the repository (a spec file, an issue number)."""
    bad = [f"{name}:{i}: {line.strip()}" for name, text in _source_texts().items()
           for i, line in enumerate(text.splitlines(), 1) if OUTSIDE_REFERENCE.search(line)]
    assert not bad, "\n".join(bad[:10])


def test_outside_reference_pattern_catches_both_kinds():
    hits = [s for s in ("see SPEC 5", "the spec's rule", "(Issue 18)", "issues 11.4-11.6", "the issue was", "tissue 3")
            if OUTSIDE_REFERENCE.search(s)]
    assert hits == ["see SPEC 5", "(Issue 18)", "issues 11.4-11.6"]


def test_every_design_section_cited_exists():
    """Every "design §n" (or §n.m, §§n-m) in the package names a numbered section of docs/design.md."""
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\. |^#{2,3} (\d+\.\d+) ", DESIGN.read_text(), re.MULTILINE))
    sections = {a or b for a, b in headings}
    cited = {(name, n) for name, text in _source_texts().items() for m in DESIGN_CITATION.finditer(text)
             for n in filter(None, (m.group(2), m.group(3)))}
    assert cited, "no design citation found: the pattern is wrong"
    missing = sorted(f"{name}: §{n}" for name, n in cited if n not in sections)
    assert not missing, missing


MAX_PACKAGE_SHARE = 0.20


def _package_lines() -> dict[str, int]:
    """Source lines of every top-level package of ``src/fedsafe`` (every .py below it)."""
    return {d.name: sum(len(f.read_text().splitlines()) for f in d.rglob("*.py"))
            for d in SRC.iterdir() if d.is_dir() and (d / "__init__.py").exists()}


def test_no_package_over_a_fifth_of_the_source():
    total = sum(len(f.read_text().splitlines()) for f in SRC.rglob("*.py"))
    lines = _package_lines()
    assert len(lines) > 5 and total > sum(lines.values()) > 0, "packages not found"
    big = {p: f"{n / total:.1%}" for p, n in lines.items() if n > MAX_PACKAGE_SHARE * total}
    assert not big, f"packages over {MAX_PACKAGE_SHARE:.0%} of the {total} source lines: {big}"


def test_no_module_file_name_in_two_packages():
    seen: dict[str, list[str]] = {}
    for f in SRC.rglob("*.py"):
        if f.name != "__init__.py":
            seen.setdefault(f.name, []).append(str(f.relative_to(SRC)))
    assert len(seen) > 50, "modules not found"
    twice = {n: sorted(ps) for n, ps in seen.items() if len(ps) > 1}
    assert not twice, twice


def _only_reexports(text: str) -> bool:
    """A module whose body is only imports, ``__all__`` and a docstring (at least one import from within fedsafe):
    it adds nothing but a second name for things that live elsewhere."""
    body = ast.parse(text).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    imports = [n for n in body if isinstance(n, ast.Import | ast.ImportFrom)]
    rest = [n for n in body if not isinstance(n, ast.Import | ast.ImportFrom)
            and not (isinstance(n, ast.Assign | ast.AnnAssign) and "__all__" in ast.unparse(n).split("=")[0])]
    relative = [n for n in imports if isinstance(n, ast.ImportFrom) and (n.level or "fedsafe" in (n.module or ""))]
    return bool(relative) and not rest


def test_no_module_only_reexports():
    """A module is a home: re-export modules are gone. A package's ``__init__.py`` may gather its public names (it
    is the package's front door); every other module must define something."""
    bad = sorted(str(f.relative_to(SRC)) for f in SRC.rglob("*.py")
                 if f.name != "__init__.py" and _only_reexports(f.read_text()))
    assert not bad, f"modules that only re-export: {bad}"


def test_reexport_detector_tells_a_forwarder_from_a_module():
    forwarder = ('"""Doc."""\nfrom __future__ import annotations\nfrom .a import x\nfrom .b import y\n'
                 '__all__ = ["x", "y"]\n')
    module = '"""Doc."""\nfrom .a import x\n\n\ndef f():\n    return x\n'
    constant = 'from .a import x\nLIMIT = 3\n'
    outside = 'import math\n'
    assert [_only_reexports(s) for s in (forwarder, module, constant, outside)] == [True, False, False, False]
