"""--items-by-power: each model's items per task, sized from a pilot of its baseline before the sweep.

The pilot (evaluation/pilot.py) scores each benchmark of the baseline on a few items, in the
sweep as Ray tasks on the trials' devices (pilot_tasks.py): the baseline's accuracy per task and
its CPU-seconds per item. The plan (evaluation/power.py) then gives each task the items that see
the drop asked for, within the CPU-seconds one trial's evaluation may cost, and leaves out the
tasks whose baseline would not be above chance. Every trial of the model (baseline and pruned)
evaluates with those limits.

The pilot is recorded in the ledger (kind ``pilot``), so a rerun of the same command plans the
same items without measuring again: the trials it resumes compare with the ones that finished.
It is not a phase barrier: only the baseline, once, seconds to minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

from glu_ray.errors import GluRayError
from glu_ray.evaluation.meter import Meter
from glu_ray.evaluation.pilot import PILOT_ITEMS, pilot_costs
from glu_ray.evaluation.power import Z, PowerPlan, TaskCost, plan_items
from glu_ray.trials.config import TrialConfig
from glu_ray.trials.ledger import PILOT, Event, Ledger
from glu_ray.vocab import TrialStatus

Costs = tuple[TaskCost, ...]
Measure = Callable[["ItemsByPower", list[TrialConfig], int], Iterator[tuple[TrialConfig, Costs]]]


@dataclass(frozen=True)
class ItemsByPower:
    drop: float  # the smallest drop worth detecting (accuracy points, 0.05 = 5 points)
    budget_s: float | None = None  # CPU-seconds one trial's evaluation may cost; None: unbounded
    z: float = Z  # at this many standard errors
    pilot_items: int = PILOT_ITEMS  # items per benchmark in the baseline's pilot

    def __post_init__(self):
        if not 0 < self.drop < 1:
            raise GluRayError(f"--items-by-power takes the drop to detect, in (0, 1) (e.g. 0.05), got {self.drop}")
        if self.budget_s is not None and not self.budget_s > 0:
            raise GluRayError(f"--power-budget must be > 0 CPU-seconds, got {self.budget_s}")
        if self.pilot_items < 1:
            raise GluRayError(f"--pilot-items must be at least 1, got {self.pilot_items}")


def size_items(power: ItemsByPower, baselines: list[TrialConfig], pruned: list[TrialConfig], ledger: Ledger,
               verbose: int = 1, measure: Measure | None = None
               ) -> tuple[list[TrialConfig], list[TrialConfig], dict[str, PowerPlan]]:
    """(baselines, pruned trials, model -> plan), every trial with its model's per-task limits.

    ``measure(power, cfgs, verbose)`` yields each pilot not in the ledger as ``(cfg, costs)`` when
    it ends: the sweep's runs them at once as Ray tasks on the trials' devices (pilot_tasks.py);
    the default runs them here, one after another. Each is in the ledger as soon as it ends.
    """
    kept = kept_pilots(ledger)
    todo = [b for b in baselines if _pilot_key(power, b) not in kept]
    for cfg in todo if verbose else ():
        print(f"{cfg.model_name} pilot: the baseline on {power.pilot_items} items per task, to size items by power",
              flush=True)
    for cfg, costs in (measure or measure_here)(power, todo, verbose):
        kept[_pilot_key(power, cfg)] = costs
        ledger.append(Event(_pilot_key(power, cfg), PILOT, None, TrialStatus.COMPLETED,
                            {"tasks": [asdict(c) for c in costs]}))
    plans = {}
    for base in baselines:
        plan = plan_items(kept[_pilot_key(power, base)], power.drop, budget_s=power.budget_s, z=power.z)
        plans[base.model] = plan
        if verbose:
            print(f"{base.model_name}: {plan.table()}", flush=True)
    with_limits = lambda c: replace(c, eval=replace(c.eval, limits=plans[c.model].limits()))  # noqa: E731
    return [with_limits(c) for c in baselines], [with_limits(c) for c in pruned], plans


def record(plans: dict[str, PowerPlan]) -> dict:
    """What MLflow keeps of the plans (the sweep run's items_by_power.json)."""
    return {model: plan.to_dict() for model, plan in plans.items()}


def _pilot_key(power: ItemsByPower, cfg: TrialConfig) -> str:
    return f"{cfg.key}|pilot|{cfg.eval.suite}|{','.join(cfg.eval.tasks or ())}|{power.pilot_items}"


def kept_pilots(ledger: Ledger) -> dict[str, tuple[TaskCost, ...]]:
    """Each pilot the ledger holds (its key -> what it measured), the latest where one was rerun."""
    return {e.key: tuple(TaskCost(**{**t, "chance": _chance(t["chance"])}) for t in e.data["tasks"])
            for e in ledger.events() if e.kind == PILOT}


def _chance(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def measure_here(power: ItemsByPower, cfgs: list[TrialConfig], verbose: int) -> Iterator[tuple[TrialConfig, Costs]]:
    for cfg in cfgs:
        say = (lambda line, name=cfg.model_name: print(f"{name} pilot: {line}", flush=True)) if verbose else None
        yield cfg, measure_pilot(power, cfg, say)


def measure_pilot(power: ItemsByPower, cfg: TrialConfig, say: Callable[[str], None] | None = None,
                  benchmark: str | None = None) -> Costs:
    """The baseline's pilot (of one ``benchmark`` of its suite, or all) on this process's device;
    ``say`` takes its progress lines."""
    from glu_ray.models.loading import free_memory, load_model  # lazy: transformers (see trial.py)
    from glu_ray.sweep.trial import eval_settings

    suite = cfg.eval.load_suite()
    if benchmark is not None:
        suite = replace(suite, benchmarks=tuple(b for b in suite.benchmarks if b.name == benchmark))
    model, tok = load_model(cfg.model, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype)
    try:
        return pilot_costs(model, tok, suite, items=power.pilot_items,
                           batch_size=cfg.eval.batch_size, meter=Meter(say) if say else None,
                           **eval_settings(cfg, model))
    finally:
        del model, tok
        free_memory()
