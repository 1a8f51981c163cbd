"""The package's import graph: no circle, no low layer importing a high one, no hidden in-function
imports in library code, and no source file over 400 lines. Read from the modules' own text (ast)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fedsafe"
LOW = ("federation", "attacks", "defenses", "privacy", "metrics", "data", "models", "runs")
HIGH = ("experiments", "cli", "flower", "report", "build")
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


def test_low_layers_never_import_high_ones(graph):
    mods, imports = graph
    bad = [(m, t) for m, ts in imports.items() if _layer(m) in LOW for t, _ in ts
           if t.startswith("fedsafe.") and _layer(t) in HIGH]
    assert not bad, f"low layers import runners: {bad[:5]}"


def test_no_import_circle(graph):
    mods, imports = graph
    edges = {m: {t for t, _ in ts if t in mods and t != m and mods[t].name != "__init__.py"}
             for m, ts in imports.items()}
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
        for w in edges[v]:
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

    for v in edges:
        if v not in index and mods[v].name != "__init__.py":
            visit(v)
    assert not cycles, f"import circles: {cycles}"


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
