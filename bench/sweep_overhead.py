"""Sweep overhead and the compute early stopping saves, on the tiny grid (offline, CPUs).

    python bench/sweep_overhead.py [--storage DIR]

1. Runs the `--preset tiny` grid of sweeps/full_grid.py and compares the sweep's wall time with
   the sum of per-trial compute (each trial's own seconds: load + prune + evaluation) divided by
   the trial slots Ray had. Target: wall <= 1.3x that ideal.
2. Reruns the trials that early stopping ended, with stopping off, and compares what they cost
   stopped with what they cost evaluated fully. Target: >= 80% saved.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glu_ray.sweep.driver import SweepOptions, run_sweep
from glu_ray.sweep.local_ray import loopback_env
from glu_ray.cli.sweep import build_parser, grid_from_args
from glu_ray.trials.stop_rule import StopRule
from glu_ray.vocab import STATUS, TRIAL_SECONDS, TrialStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
from full_grid import STUDY, TINY


def trial_seconds(result) -> dict[str, float]:
    return {t.name: result.rows[t.key][TRIAL_SECONDS] for t in result.trials if t.key in result.rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", default=None, help="results folder (default: a temporary one)")
    args = p.parse_args()
    storage = args.storage or tempfile.mkdtemp(prefix="glu-ray-bench-")
    sweep_args = build_parser({"tiny": TINY, "study": STUDY}, "").parse_args(["--preset", "tiny", "--storage", storage])
    grid = grid_from_args(sweep_args, TINY)  # builds (trains) the tiny models before timing starts

    import ray

    with loopback_env(Path(storage) / "overhead") as runtime_env:  # as the sweep's own start-up: loopback only
        # started outside the timing: a fixed cost, not per-sweep overhead
        ray.init(address="local", include_dashboard=False, runtime_env=runtime_env)
    slots = int(ray.cluster_resources()["CPU"])
    start = time.perf_counter()
    result = run_sweep(grid, SweepOptions(name="overhead", storage=storage, verbose=0))
    wall = time.perf_counter() - start
    secs = trial_seconds(result)
    ideal = sum(secs.values()) / slots
    print(f"tiny grid: {len(result.trials)} trials on {slots} CPU slots")
    print(f"  sweep wall time            {wall:8.1f} s")
    print(f"  sum of per-trial compute   {sum(secs.values()):8.1f} s  (/{slots} slots = {ideal:.1f} s ideal)")
    print(f"  wall / ideal               {wall / ideal:8.2f}x   (target <= 1.3x)")

    stopped = [t for t in result.trials if result.rows[t.key][STATUS] is TrialStatus.STOPPED]
    if not stopped:
        print("no trial was stopped early: nothing to compare")
        return
    names = {t.name for t in stopped}
    full = run_sweep(replace(grid, stop=StopRule(threshold=float("inf"))), SweepOptions(name="overhead-nostop", storage=storage, verbose=0))
    full_secs = {n: s for n, s in trial_seconds(full).items() if n in names}
    cost_stopped, cost_full = sum(secs[n] for n in names), sum(full_secs.values())
    print(f"early stopping: {len(stopped)} trials stopped after stage 0")
    print(f"  their cost, stopped        {cost_stopped:8.1f} s")
    print(f"  their cost, run fully      {cost_full:8.1f} s")
    print(f"  compute saved              {100 * (1 - cost_stopped / cost_full):7.1f}%   (target >= 80%)")


if __name__ == "__main__":
    main()
