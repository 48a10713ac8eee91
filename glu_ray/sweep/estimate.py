"""`--estimate`: the projected GPU-hours of a sweep grid, printed before anything runs."""

from __future__ import annotations

from glu_ray.cost.gpu_cost import estimate_sweep, load_profile, trial_from_config
from glu_ray.errors import GluRayError
from glu_ray.models.loading import check_glu_config
from glu_ray.models.snapshots import snapshot_path
from glu_ray.sweep.grid import SweepGrid, build_trials, gpu_fraction, gpu_memory


def config_or_snapshot(source: str, *, trust_remote_code: bool = False):
    """The model's live config; offline, the bundled snapshot of a study model's config."""
    try:
        return check_glu_config(source, trust_remote_code=trust_remote_code)
    except GluRayError:
        snapshot = snapshot_path(source) if "/" in source else None
        if snapshot is None:
            raise
        from transformers import (
            AutoConfig,  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)
        )

        return AutoConfig.from_pretrained(snapshot)


def print_estimate(grid: SweepGrid, opts, *, stopped_fraction: float = 0.5) -> int:
    """Cost every trial of ``grid`` with glu_ray.cost.gpu_cost and print the table; returns 0."""
    baselines, pruned = build_trials(grid, load_config=config_or_snapshot)
    costs = []
    for base in baselines:
        suite = base.eval.load_suite()
        frac = opts.gpu_fraction or gpu_fraction(base.num_params, gpu_memory(opts.gpu_memory_gb))  # as the sweep packs
        tasks = tuple(b.task for b in suite.benchmarks)
        root = trial_from_config(config_or_snapshot(base.model), name=base.name, model=base.model_name,
                                 width=base.width.width, benchmarks=tasks, gpu_fraction=frac, baseline=True)
        costs += [root] + [root.pruned(t.name, t.width.width) for t in pruned if t.model == base.model]
    print(estimate_sweep(costs, load_profile(), stopped_fraction=stopped_fraction).table())
    return 0
