"""Mutation score per module, from the results `mutmut run` leaves in mutants/ (`make mutation`).

    python bench/mutation_score.py                  # the table, one row per mutated module
    python bench/mutation_score.py --survivors      # and the name of every surviving mutant
    python bench/mutation_score.py --earlier OLD    # OLD's results where this run checked nothing

mutmut records each mutant's pytest exit code in ``mutants/<file>.py.meta``; its own table of what
a code means (mutmut.stats.status_by_exit_code) turns them into statuses. The score is the share
of the checked mutants that a test caught (a test failed, or the mutant hung or crashed the run:
"timeout" is shown apart, since a loaded machine can time a slow test out too). A mutant that no
selected test reaches ("no tests") counts against the score like a survivor: nothing would notice
it either. "not checked": a run stopped before it got there.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

KILLED = ("killed", "timeout", "segfault", "caught by type check")
COLUMNS = ("killed", "timeout", "survived", "no tests", "not checked", "other")


def statuses(mutants: Path) -> dict[str, dict[str, str]]:
    """Module path (glu_ray/sweep/ledger.py) -> mutant name -> status."""
    from mutmut.stats import status_by_exit_code

    out = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            module = meta.relative_to(mutants).as_posix().removesuffix(".meta")
            out[module] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return out


def table(by_module: dict[str, dict[str, str]]) -> str:
    rows = [f"| module | mutants | {' | '.join(COLUMNS)} | score (caught / checked) |", "|---" * (len(COLUMNS) + 3) + "|"]
    total = Counter()
    for module, names in [*by_module.items(), ("all", None)]:
        if names is None:
            counts = total
        else:
            counts = Counter(s if s in COLUMNS else "killed" if s in KILLED else "other" for s in names.values())
            total.update(counts)
        n = sum(counts.values())
        checked = n - counts["not checked"]
        caught = counts["killed"] + counts["timeout"]
        score = f"{100 * caught / checked:.0f}% ({caught}/{checked})" if checked else "-"
        rows.append(f"| {module} | {n} | {' | '.join(str(counts[c]) for c in COLUMNS)} | {score} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's working folder")
    p.add_argument("--survivors", action="store_true", help="list every mutant that survived or that no test reached")
    p.add_argument("--earlier", type=Path, help="an earlier run's mutants/ folder: its results stand for the mutants "
                   "this run did not check (a run over the earlier survivors only, after adding tests)")
    args = p.parse_args()
    by_module = statuses(args.mutants)
    if args.earlier:
        for module, names in statuses(args.earlier).items():
            mine = by_module.setdefault(module, {})
            for name, status in names.items():
                if mine.get(name, "not checked") == "not checked":
                    mine[name] = status
    if not by_module:
        raise SystemExit(f"no mutmut results under {args.mutants}: run `make mutation` first")
    print(table(by_module))
    if args.survivors:
        for names in by_module.values():
            for name, status in names.items():
                if status in ("survived", "no tests"):
                    print(f"{status}: {name}")


if __name__ == "__main__":
    main()
