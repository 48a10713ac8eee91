"""The study grid's makespan on N GPUs, simulated three ways (cost model, nothing runs).

    python bench/schedule_study.py [--gpus 4,8,16] [--stopped-fraction 0.5]

Each trial priced by glu_ray.cost (the default H200 profile, packed by the sweep's GPU fractions),
scheduled by glu_ray.cost.schedule the way Tune and Ray place trials, against the lower bound
max(GPU-seconds / N, longest trial):
  1. phase barrier: every baseline's full suite, then the pruned grid in grid order (before);
  2. references' stage 0 first (each on a whole GPU), then everything in grid order;
  3. ... and longest expected first: what the sweep does (sweep/plan.py), what --estimate prints.
The pruned trials that stop end after stage 0: the most-pruned ``--stopped-fraction`` of each model's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the study models' bundled config snapshots

from full_grid import STUDY

from glu_ray.cli.sweep import build_parser, grid_from_args
from glu_ray.cost.schedule import Job, lower_bound, simulate
from glu_ray.sweep.estimate import (config_or_snapshot, modelled_times, simulate_sweep, stopped_trials,
                                    trial_costs)
from glu_ray.sweep.grid import build_trials, gpu_fraction, gpu_memory
from glu_ray.sweep.plan import reference_trials


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", default="4,8,16")
    p.add_argument("--stopped-fraction", type=float, default=0.5)
    args = p.parse_args()
    grid = grid_from_args(build_parser({"study": STUDY}, "").parse_args([]), STUDY)
    baselines, pruned = build_trials(grid, load_config=config_or_snapshot)
    mem = gpu_memory(None)
    times = modelled_times(trial_costs(baselines + pruned, lambda c: gpu_fraction(c.num_params, mem)))
    stop = stopped_trials(pruned, args.stopped_fraction)

    def job(c):
        return Job(c.key, times[c.key].stage0 if c.key in stop else times[c.key].full, times[c.key].share)

    refs = [Job(f"reference:{c.key}", times[c.key].stage0_alone, 1.0)
            for c in reference_trials(baselines, pruned, grid.stop, grid.metrics)]
    jobs = [job(c) for c in baselines + pruned]
    gpu_h = sum(j.seconds * j.share for j in jobs) / 3600
    print(f"study grid: {len(jobs)} trials, {gpu_h:.2f} packed GPU-hours (H200 profile), "
          f"{100 * args.stopped_fraction:.0f}% of pruned trials stopping after stage 0")
    print(f"  {'GPUs':>5}{'bound h':>9}{'barrier':>10}{'refs first':>12}{'+ longest first':>17}")
    for n in (int(x) for x in args.gpus.split(",")):
        bound = lower_bound(jobs, n)
        barrier = simulate([[job(c) for c in baselines], [job(c) for c in pruned]], n).makespan
        grid_order = simulate([refs, jobs], n).makespan
        ours = simulate_sweep(reference_trials(baselines, pruned, grid.stop, grid.metrics), baselines + pruned,
                              times, stop, n)[0].makespan
        print(f"  {n:>5}{bound / 3600:>9.2f}" + "".join(f"{m / bound:>{w}.2f}x" for m, w in
                                                        ((barrier, 9), (grid_order, 11), (ours, 16))))


if __name__ == "__main__":
    main()
