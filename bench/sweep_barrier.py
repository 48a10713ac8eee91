"""The phase barrier against the sweep without it, on the tiny grid (offline, CPUs), in one run.

    python bench/sweep_barrier.py [--storage DIR] [--base COMMIT] [--repeats N]

Runs `sweeps/full_grid.py --preset tiny` twice on this machine, each in its own process on the
same trained tiny models: once with the code as it was before the barrier went (``--base``,
default: the parent of the commit that added glu_ray/sweep/plan.py, unpacked with `git archive`),
once with this checkout (references' stage 0 first, then one Tune experiment, longest expected
first). For each: run_sweep's wall time, and the ideal max(sum of per-trial seconds / slots,
longest trial), per-trial seconds being each trial's own (load + prune + evaluation, from its
ledger). The reference runs are overhead of the new schedule: in its wall time, not its ideal.
With ``--repeats N`` the two alternate (old, new, old, new, ...), so load that drifts during the run
falls on both; every run is a row, and wall/ideal is what compares across them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(storage: Path, experiment: str) -> None:
    """In a process whose PYTHONPATH is the tree under test: the tiny preset, timed, as JSON. Both
    times include the analysis report (the old driver wrote it inside run_sweep, the CLI now after)."""
    sys.path.insert(0, str(Path(os.environ["PYTHONPATH"]) / "sweeps"))  # the tree's own preset
    from full_grid import TINY

    import glu_ray.cli.sweep as cli
    from glu_ray.sweep.driver import run_sweep
    from glu_ray.vocab import TRIAL_SECONDS

    build_parser, grid_from_args, options_from_args = cli.build_parser, cli.grid_from_args, cli.options_from_args
    report = getattr(cli, "write_sweep_report", lambda result: None)

    args = build_parser({"tiny": TINY}, "").parse_args(["--storage", str(storage), "--experiment", experiment,
                                                        "--verbose", "0"])
    grid, opts = grid_from_args(args, TINY), options_from_args(args, TINY)
    start = time.perf_counter()
    result = run_sweep(grid, opts)
    report(result)
    wall = time.perf_counter() - start
    seconds = [float(r[TRIAL_SECONDS]) for r in result.rows.values() if TRIAL_SECONDS in r]
    print(json.dumps({"wall": wall, "trials": len(result.trials), "seconds": seconds, "finished": result.finished}))


def base_commit() -> str:
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "glu_ray/sweep/plan.py"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    if not added:
        raise SystemExit("no commit adds glu_ray/sweep/plan.py here: pass --base")
    return added[-1] + "^"


def unpack(commit: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def measure(tree: Path, storage: Path, experiment: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", experiment,
                          "--storage", str(storage)], env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise SystemExit(f"{experiment} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{experiment}: {json.dumps(result)}", file=sys.stderr, flush=True)  # each as it ends: runs are minutes
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", help="results folder (default: a temporary one)")
    p.add_argument("--base", help="the commit with the phase barrier (default: before glu_ray/sweep/plan.py)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each, alternating (default 1)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    storage = Path(args.storage or tempfile.mkdtemp(prefix="bench-barrier-")).resolve()
    if args.child:
        return child(storage, args.child)
    base = args.base or base_commit()
    old = unpack(base, Path(tempfile.mkdtemp(prefix="bench-barrier-src-")) / "tree")
    sys.path.insert(0, str(REPO))
    from glu_ray.models.tiny import tiny_preset_models

    tiny_preset_models(storage)  # trained once, before either clock starts; both runs read them
    slots = os.cpu_count()
    short = subprocess.run(["git", "rev-parse", "--short", base], cwd=REPO, capture_output=True, text=True).stdout.strip()
    rows = []
    for i in range(args.repeats):
        suffix = f"-{i + 1}" if args.repeats > 1 else ""  # a fresh experiment each: the same name would resume
        rows.append(("phase barrier", short, measure(old, storage, f"tiny-barrier{suffix}")))
        rows.append(("no barrier, longest first", "this checkout", measure(REPO, storage, f"tiny-no-barrier{suffix}")))
    print(f"tiny grid on {slots} CPU slots (one trial per CPU)")
    print(f"  {'schedule':<27}{'code':<15}{'trials':>7}{'wall s':>9}{'ideal s':>9}{'wall/ideal':>12}")
    for name, code, r in rows:
        ideal = max(sum(r["seconds"]) / slots, max(r["seconds"]))
        print(f"  {name:<27}{code:<15}{r['trials']:>7}{r['wall']:>9.1f}{ideal:>9.1f}{r['wall'] / ideal:>11.2f}x"
              + ("" if r["finished"] else "  (not finished)"))


if __name__ == "__main__":
    main()
