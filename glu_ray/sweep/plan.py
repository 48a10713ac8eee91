"""What the sweep runs, and in which order: no phase barrier, longest expected trials first.

A pruned trial needs one number before it can decide to stop: its reference's stage-0 perplexity
(the unpruned baseline's; also the random control's at its width when the stop rule compares with
the control). ``reference_trials`` names them; the driver measures each one's stage 0 alone (a
reference run: seconds per model, kept in the ledger, never in MLflow) and then runs every
trial, full baselines included, as one Tune experiment. A pruned trial whose reference was never
measured (its run failed, or the sweep was interrupted) is held back, so no work starts without it.

Order: Tune starts trials in ``grid_search`` order, so the longest expected trials go first and
the tail is short. Expected seconds come from the GPU cost model (glu_ray.cost) on a GPU, and on
a CPU from the ledger's measured trial times where it has them (the cost model, scaled to them,
for models not measured yet).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace

from glu_ray.trials.config import TrialConfig
from glu_ray.trials.stop_rule import StopRule
from glu_ray.vocab import PPL_WORD, STATUS, TRIAL_SECONDS, TrialStatus


def reference_trials(baselines: Sequence[TrialConfig], pruned: Sequence[TrialConfig], stop: StopRule,
                     metrics: Sequence[str]) -> list[TrialConfig]:
    """Whose stage 0 the others read: every baseline (the perplexity ratio every trial reports),
    and the controls when the rule compares with them."""
    controls: dict[tuple, TrialConfig] = {}  # one per (model, width): the first seed's
    for c in pruned:
        if stop.needs_control(metrics) and c.metric == stop.control_metric:
            controls.setdefault((c.model, c.width.width), c)
    return list(baselines) + list(controls.values())


def with_references(pruned: Sequence[TrialConfig], measured: Mapping[str, dict], baselines: Sequence[TrialConfig],
                    references: Sequence[TrialConfig]) -> tuple[list[TrialConfig], list[TrialConfig]]:
    """(ready, held): pruned trials with their reference perplexities filled in, and those whose
    reference has no stage 0 in the ledger yet. ``measured``: trial key -> its stage-0 data."""
    base = {c.model: c.key for c in baselines}
    ctrl = {(c.model, c.width.width): c.key for c in references if not c.is_baseline}
    ready, held = [], []
    for cfg in pruned:
        needs = [base[cfg.model]]
        own_control = ctrl.get((cfg.model, cfg.width.width))
        if own_control is not None and own_control != cfg.key:
            needs.append(own_control)
        if not all(k in measured for k in needs):
            held.append(cfg)
            continue
        control = _finite(measured[own_control].get(PPL_WORD)) if len(needs) > 1 else None
        ready.append(replace(cfg, baseline_ppl=_finite(measured[needs[0]].get(PPL_WORD)), control_ppl=control))
    return ready, held


def longest_first(trials: Sequence[TrialConfig], expected: Mapping[str, float]) -> list[TrialConfig]:
    """Descending expected seconds; equal ones keep the grid's order (sorted is stable)."""
    return sorted(trials, key=lambda c: -expected.get(c.key, 0.0))


def expected_seconds(trials: Sequence[TrialConfig], modelled: Mapping[str, float],
                     rows: Mapping[str, dict] | None = None) -> dict[str, float]:
    """Trial key -> expected seconds: the cost model's, times what the ledger measured.

    ``rows`` (the ledger's, on a CPU): each model's completed full trials give measured/modelled; its
    median scales that model's other trials (the model's shape, the clock of this machine); a
    model with none measured takes the median over all. Without rows: the model's seconds."""
    ratios: dict[str, list[float]] = {}
    for cfg in trials:
        row = (rows or {}).get(cfg.key, {})
        # Only full trials: a --stage0-only one's stage 0 says little of how this clock runs lm-eval.
        done = TrialStatus(row.get(STATUS, TrialStatus.PENDING)) is TrialStatus.COMPLETED and not cfg.eval.stage0_only
        if done and modelled.get(cfg.key) and TRIAL_SECONDS in row:
            ratios.setdefault(cfg.model, []).append(float(row[TRIAL_SECONDS]) / modelled[cfg.key])
    overall = statistics.median([r for rs in ratios.values() for r in rs]) if ratios else 1.0
    scale = {m: statistics.median(rs) for m, rs in ratios.items()}
    return {c.key: modelled.get(c.key, 0.0) * scale.get(c.model, overall) for c in trials}


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None
