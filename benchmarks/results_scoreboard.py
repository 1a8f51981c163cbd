"""The claims scoreboard of docs/results/README.md: every republished claim, one row each, with its status on each
task and the number of matched seeds behind it, read from the reproductions' ``verdicts.json`` files, so that the
page cannot drift from them.

    python benchmarks/results_scoreboard.py [docs/results] [--write]

Prints the Markdown that docs/results/README.md holds between its scoreboard markers (a test checks that it does);
``--write`` puts it there (run it after publishing a table).
A table's folders are ``ROOT/<reproduction>/<task>/``; a claim a task has not been republished for reads "not yet".
"n" is the smallest and largest number of matched seeds over the claim's points (``points[].n`` in verdicts.json).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

TASKS = ("meningioma", "glioma")
ORDER = ("crn-table1", "crn-table2", "crn-fig2", "crn-fig3", "fedsafe-table1", "fedsafe-table2", "fedsafe-fig3",
         "fedsafe-adaptive")
BEGIN = "<!-- scoreboard: python benchmarks/results_scoreboard.py -->"
END = "<!-- end of scoreboard -->"


def seeds_n(verdict: dict, where: str) -> str:
    """"n 3" or "n 1-5": the fewest and most matched seeds over the verdict's defined points (its ``points``); ""
    when none is defined."""
    if "points" not in verdict:
        raise SystemExit(f"{where}: a verdict without per-point numbers ({verdict.get('claim', '?')!r}), written "
                         "before verdicts.json held them: rebuild it with `fedsafe reproduce ... --cached-only`")
    ns = [p["n"] for p in verdict["points"] if p["n"] > 0]
    if not ns:
        return ""
    return f"n {min(ns)}" if min(ns) == max(ns) else f"n {min(ns)}-{max(ns)}"


def claim_key(claim: str) -> str:
    """The claim without its task-specific privacy figures (Fed-Safe Table 2 names its arms' epsilon, which differs
    by task): the parenthetical group that opens with " (DP" or " (not DP", nested groups included."""
    for opener in (" (not DP", " (DP"):
        i = claim.find(opener)
        if i < 0:
            continue
        depth = 0
        for j in range(i + 1, len(claim)):
            depth += {"(": 1, ")": -1}.get(claim[j], 0)
            if depth == 0:
                return claim_key(claim[:i] + claim[j + 1:])
    return claim


def cell(table: str, task: str, verdict: dict | None) -> str:
    if verdict is None:
        return "not yet"
    n = seeds_n(verdict, f"{table}/{task}/verdicts.json")
    return f"[{verdict['status']}]({table}/{task}/{table}.md)" + (f" ({n})" if n else "")


def scoreboard(root: Path) -> str:
    found: dict[str, dict[str, list[dict]]] = {}
    for f in sorted(root.glob("*/*/verdicts.json")):
        found.setdefault(f.parent.parent.name, {})[f.parent.name] = json.loads(f.read_text())
    tables = [t for t in ORDER if t in found] + sorted(set(found) - set(ORDER))
    counts: Counter[str] = Counter()
    out = []
    for table in tables:
        by_task = {task: {claim_key(v["claim"]): v for v in found[table].get(task, [])} for task in TASKS}
        claims = list(dict.fromkeys(c for task in TASKS for c in by_task[task]))
        out += ["", f"| {table}: claim | {' | '.join(TASKS)} |", "|---|" + "---|" * len(TASKS)]
        for claim in claims:
            cells = [cell(table, task, by_task[task].get(claim)) for task in TASKS]
            counts.update(by_task[task][claim]["status"] for task in TASKS if claim in by_task[task])
            out.append(f"| {claim.replace('|', '/')} | {' | '.join(cells)} |")
    total = sum(counts.values())
    pairs = sum(len(set(found[table]) & set(TASKS)) for table in tables)
    head = (f"{total} verdicts (a claim on a task) in {len(tables)} republished reproductions ({pairs} of their "
            f"{len(tables) * len(TASKS)} reproduction-task pairs): "
            + ", ".join(f"{k} {counts[k]}" for k in sorted(counts, key=lambda s: (-counts[s], s))) + ".")
    return "\n".join([head, *out])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", default="docs/results", type=Path)
    ap.add_argument("--write", action="store_true", help="replace the block in ROOT/README.md")
    args = ap.parse_args()
    text = scoreboard(args.root)
    if not args.write:
        print(text)
        return
    page = args.root / "README.md"
    old = page.read_text()
    if BEGIN not in old or END not in old:
        raise SystemExit(f"{page}: no scoreboard markers ({BEGIN} ... {END})")
    start, end = old.index(BEGIN) + len(BEGIN), old.index(END)
    page.write_text(old[:start] + "\n" + text + "\n" + old[end:])
    print(f"{page}: scoreboard written ({text.splitlines()[0]})")


if __name__ == "__main__":
    main()
