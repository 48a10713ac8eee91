"""The baselines' pilots of --items-by-power (items.py) as Ray tasks, one per (model, benchmark).

They run where trials run, on a trial's share of a device, not in the driver: a cluster's head
node may have no GPU, and a 3B baseline's pilot on its CPU would take hours. All start at once and
pack as trials do (on 2 CPUs: two benchmarks at a time, one thread each, the thread count the
trials' CPU-seconds are measured at). Their progress lines reach the terminal as a running
trial's do (progress_log.py), and each model's pilot is yielded as soon as its last benchmark
ends, so the ledger keeps the models that finished when another one fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from glu_ray.errors import GluRayError, first_line
from glu_ray.sweep.items import Costs, ItemsByPower, Measure, measure_pilot
from glu_ray.sweep.progress_log import trial_sink
from glu_ray.trials.config import TrialConfig


def on_ray(resources: Callable[[TrialConfig], dict]) -> Measure:
    """items.size_items's ``measure``: ``resources(cfg)`` is a trial's {"cpu": n, "gpu": share}."""

    def measure(power: ItemsByPower, cfgs: list[TrialConfig], verbose: int) -> Iterator[tuple[TrialConfig, Costs]]:
        import ray  # lazy: only where a sweep runs

        from glu_ray.sweep.progress import TrialLinesCallback

        lines = TrialLinesCallback() if verbose else None
        if lines:
            lines.setup()
        task = ray.remote(_pilot_task)
        running, parts, order = {}, {}, {}  # ref -> (cfg, benchmark); model -> {benchmark: costs}; its suite's names
        for cfg in cfgs:
            need = resources(cfg)
            options = task.options(num_cpus=need["cpu"], num_gpus=need.get("gpu", 0), max_retries=0)
            order[cfg.key] = [b.name for b in cfg.eval.load_suite().benchmarks]
            for name in order[cfg.key]:
                running[options.remote(power, cfg, name, verbose)] = (cfg, name)
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                if lines:
                    lines.drain(wait=0)
                for ref in done:
                    cfg, bench = running.pop(ref)
                    got = parts.setdefault(cfg.key, {})
                    got[bench] = _result(ref, cfg, bench)
                    if len(got) == len(order[cfg.key]):
                        yield cfg, tuple(c for name in order[cfg.key] for c in got[name])
        finally:
            if lines:
                lines.drain(wait=5)
            for ref in running:  # interrupted, or another pilot failed: free the workers
                ray.cancel(ref, force=True)

    return measure


def _pilot_task(power: ItemsByPower, cfg: TrialConfig, benchmark: str, verbose: int) -> Costs:
    from glu_ray.sweep.trial import use_assigned_cpus

    use_assigned_cpus()
    return measure_pilot(power, cfg, trial_sink(f"{cfg.model_name} pilot:") if verbose else None, benchmark)


def _result(ref, cfg: TrialConfig, bench: str) -> Costs:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, GluRayError):  # its one line (pilot.py names the benchmark)
            raise GluRayError(str(err.cause)) from None
        raise GluRayError(f"the baseline's pilot failed on {cfg.model_name}/{bench}: "
                          f"{type(err.cause).__name__}: {first_line(err.cause)}") from None
    except ray.exceptions.RayError as err:  # the worker died (e.g. out of memory)
        raise GluRayError(f"the baseline's pilot of {cfg.model_name}/{bench} was lost: {first_line(err)}") from None
