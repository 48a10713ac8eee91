"""`--estimate`: a sweep grid's projected GPU-hours and, with ``--gpus N``, its wall-clock time.

Every trial is priced by the cost model (glu_ray.cost.gpu_cost), at the GPU share the sweep would
give it. The wall-clock time is a simulation (glu_ray.cost.schedule) of what the sweep does:
the references' stage 0 first, then every trial longest-expected first (sweep/plan.py), packed
onto GPUs by fraction, the pruned trials that stop ending after stage 0. Which ones stop is an
input (``stopped_fraction``): the most-pruned share of each model's pruned trials, since
perplexity rises with pruning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from glu_ray.cost.gpu_cost import CostProfile, TrialCost, estimate_sweep, estimate_trial, load_profile, trial_from_config
from glu_ray.cost.schedule import Job, Schedule, lower_bound, simulate
from glu_ray.cost.workloads import load_workloads
from glu_ray.errors import GluRayError
from glu_ray.models.loading import check_glu_config
from glu_ray.models.snapshots import snapshot_path
from glu_ray.pruning.widths import TargetWidth
from glu_ray.sweep.grid import SweepGrid, build_trials, gpu_fraction, gpu_memory
from glu_ray.sweep.plan import longest_first, reference_trials
from glu_ray.trials.config import TrialConfig


def config_or_snapshot(source: str, *, trust_remote_code: bool = False, revision: str | None = None):
    """The model's live config; offline, the bundled snapshot of a study model's config."""
    try:
        return check_glu_config(source, trust_remote_code=trust_remote_code, revision=revision)
    except GluRayError:
        snapshot = snapshot_path(source) if "/" in source else None
        if snapshot is None:
            raise
        from transformers import (
            AutoConfig,  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)
        )

        return AutoConfig.from_pretrained(snapshot)


@dataclass(frozen=True)
class TrialTimes:
    """One trial's wall-clock seconds while it holds ``share`` of a GPU: stopped after stage 0, or
    run fully; and its stage 0 alone on a whole GPU (how a reference runs: see plan.py)."""

    stage0: float
    full: float
    share: float
    stage0_alone: float


def trial_costs(trials: Sequence[TrialConfig], share_of: Callable[[TrialConfig], float]) -> dict[str, TrialCost]:
    """Trial key -> the cost model's view of it (sizes from the model's config: one read per model)."""
    roots, out = {}, {}
    for cfg in trials:
        if cfg.model not in roots:
            tasks = tuple(b.task for b in cfg.eval.load_suite().benchmarks)
            roots[cfg.model] = trial_from_config(config_or_snapshot(cfg.model, trust_remote_code=cfg.trust_remote_code),
                                                 name=cfg.name, model=cfg.model_name, width=cfg.width.intermediate,
                                                 benchmarks=tasks, baseline=True)
        root = replace(roots[cfg.model], gpu_fraction=share_of(cfg))
        cost = root if cfg.is_baseline else root.pruned(cfg.name, cfg.width.width)
        # --stage0-only: no benchmark, so the cost model prices it as a trial stopped after stage 0.
        out[cfg.key] = replace(cost, benchmarks=()) if cfg.eval.stage0_only else cost
    return out


def modelled_times(costs: dict[str, TrialCost], profile: CostProfile | None = None) -> dict[str, TrialTimes]:
    """Trial key -> its cost-model times. A packed trial's wall time is its packed GPU-seconds over
    its share (the GPU's other shares run its neighbours meanwhile)."""
    profile = profile or load_profile()
    table = load_workloads()
    out = {}
    for key, cost in costs.items():
        est = estimate_trial(cost, profile, table)
        share = cost.gpu_fraction
        wall = lambda s: est.packed(s, profile) / share if share < 1 else s.total  # noqa: E731
        out[key] = TrialTimes(wall(est.stage0), wall(est.full), share, est.stage0.total)
    return out


def stopped_trials(pruned: Sequence[TrialConfig], fraction: float) -> set[str]:
    """The most-pruned ``fraction`` of each model's fully evaluated pruned trials (ties: grid order);
    a --stage0-only trial ends after stage 0 whether it stops or not."""
    out: set[str] = set()
    pruned = [c for c in pruned if not c.eval.stage0_only]
    for model in dict.fromkeys(c.model for c in pruned):
        mine = sorted((c for c in pruned if c.model == model), key=lambda c: c.width.width)
        out |= {c.key for c in mine[:round(fraction * len(mine))]}
    return out


def simulate_sweep(references: Sequence[TrialConfig], trials: Sequence[TrialConfig], times: dict[str, TrialTimes],
                   stopped: set[str], devices: int, capacity: float = 1.0,
                   max_concurrent: int | None = None) -> tuple[Schedule, list[Job]]:
    """(schedule, the trials' jobs): the references' stage 0, each on a whole device, then every
    trial longest expected first."""
    refs = [Job(f"reference:{c.key}", times[c.key].stage0_alone, capacity) for c in references]
    order = longest_first(trials, {k: t.full for k, t in times.items()})
    jobs = [Job(c.key, times[c.key].stage0 if c.key in stopped else times[c.key].full, times[c.key].share)
            for c in order]
    return simulate([refs, jobs], devices, capacity, max_concurrent), jobs


def print_estimate(grid: SweepGrid, opts, *, stopped_fraction: float = 0.5, gpus: int | None = None,
                   gpus_per_node: int | None = None) -> int:
    """Cost every trial of ``grid`` and print the table; with ``gpus``, the simulated makespan
    beside the GPU-hours and the lower bound. Returns 0."""
    if grid.widths is not None:
        grid = _auto_as_fixed(grid)
    baselines, pruned = build_trials(grid, load_config=config_or_snapshot, read_data=False)
    mem = gpu_memory(opts.gpu_memory_gb)
    share_of = lambda c: opts.gpu_fraction or gpu_fraction(c.num_params, mem)  # noqa: E731 - as the sweep packs
    costs = trial_costs(baselines + pruned, share_of)
    profile = load_profile()
    if short := sum(c.eval.stage0_only for c in pruned):
        print(f"--stage0-only {','.join(grid.stage0_only)}: {short} of {len(pruned)} pruned trials priced at stage 0 alone")
    print(estimate_sweep(list(costs.values()), profile, stopped_fraction=stopped_fraction).table())
    if gpus:
        print(makespan_text(baselines, pruned, grid, modelled_times(costs, profile),
                            stopped_fraction, gpus, gpus_per_node or gpus))
    return 0


def _auto_as_fixed(grid: SweepGrid) -> SweepGrid:
    """--widths auto finds its widths at run time: price one trial per target, spread over 10-90%
    pruned (a trial's cost grows with its width), and say so; the stage-0 probes are not priced."""
    n = len(grid.widths.targets)
    pcts = [10 + 80 * i / max(n - 1, 1) for i in range(n)]
    print(f"--widths auto: {n} trials per (model, metric) priced at {', '.join(f'{p:.0f}' for p in pcts)}% pruned "
          "(the widths are found when the sweep runs); the stage-0 search before them is not priced")
    return replace(grid, widths=None, targets=tuple(TargetWidth(pruning_pct=p) for p in pcts))


def makespan_text(baselines, pruned, grid: SweepGrid, times: dict[str, TrialTimes], stopped_fraction: float,
                  gpus: int, per_node: int) -> str:
    stop = stopped_trials(pruned, stopped_fraction) if grid.stop.enabled else set()
    schedule, jobs = simulate_sweep(reference_trials(baselines, pruned, grid.stop, grid.metrics),
                                    baselines + pruned, times, stop, gpus)
    bound = lower_bound(jobs, gpus)
    gpu_h = sum(j.seconds * j.share for j in jobs) / 3600
    nodes = gpus // per_node
    return (f"  on {gpus} GPUs ({nodes} node{'s' if nodes > 1 else ''} of {per_node}): makespan "
            f"{schedule.makespan / 3600:.2f} h, simulated (references' stage 0 first, then longest expected first, "
            f"{100 * stopped_fraction:.0f}% of pruned trials stopping after stage 0; {gpu_h:.2f} GPU-h packed)\n"
            f"  lower bound max(GPU-seconds / {gpus}, longest trial) = {bound / 3600:.2f} h: makespan "
            f"{schedule.makespan / bound:.2f}x the bound")
