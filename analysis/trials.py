"""A sweep's trials -> the tidy table, from typed values only.

Each trial is its ``TrialConfig`` (the sweep's own object, or the JSON copy every MLflow trial run
carries in its ``glu_ray.trial_config`` tag, read back with ``TrialConfig.from_dict``) plus its
values and status. Nothing here parses a number back out of a display string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import pandas as pd

from analysis.benchmarks import STAGE0, benchmark_meta
from analysis.tidy import RunInfo, number, size_label, tidy_frame, tidy_rows
from glu_ray.trials.config import TrialConfig
from glu_ray.tracking.artifacts import ITEM_SCORES
from glu_ray.vocab import (DECODE_TOK_S, ENERGY_J_PER_TOK, PARAMS_KEPT, PARAMS_TOTAL, STATUS, TrialStatus,
                           efficiency_key, unhealed_key)

PARETO_BATCH = 1  # the study's throughput figure: one request at a time


def trial_info(cfg: TrialConfig, status: TrialStatus, values: Mapping[str, float] | None = None) -> RunInfo:
    values = values or {}
    return RunInfo(
        model=cfg.model_name,
        size=size_label(cfg.num_params),
        variant=cfg.variant,
        method=cfg.method,
        expansion_ratio=cfg.width.expansion_ratio,
        pruning_pct=cfg.width.pruning_pct,
        width=cfg.width.width,
        status=TrialStatus(status).value,
        seed=cfg.seed,
        decode_tok_s=number(values.get(efficiency_key(DECODE_TOK_S, PARETO_BATCH))),
        # Parameters are known without the efficiency stage too: the trial reports what it kept.
        params=number(values.get(efficiency_key(PARAMS_TOTAL), values.get(PARAMS_KEPT))),
        energy_j_per_tok=number(values.get(efficiency_key(ENERGY_J_PER_TOK, PARETO_BATCH))),
    )


def trial_rows(cfg: TrialConfig, values: Mapping[str, float], status: TrialStatus,
               plans: Mapping[str, Mapping] | None = None, items: Mapping[str, Mapping] | None = None) -> list[dict]:
    """Tidy rows of one trial. A trial stopped early keeps rows for the benchmarks it never
    reached (score NaN): fragility reads them as a floor, not as missing data. ``plans``: the
    sweep's items plans (its items_by_power.json), whose left-out benchmarks are marked.
    ``items``: the trial's item_scores.json, where it has one."""
    status = TrialStatus(status)
    meta = {**benchmark_meta(cfg.eval.suite), STAGE0.name: STAGE0}  # stage 0's perplexity is a benchmark too
    info = trial_info(cfg, status, values)
    pruned_items, healed_items = split_items(items or {})
    rows = tidy_rows(info, values, meta, keep_missing=status.stopped, items=pruned_items)
    healed = {before: v for k, v in values.items() if (before := unhealed_key(k)) is not None}
    if cfg.recovery is not None and healed:  # the same model after healing: rows of their own
        rows += tidy_rows(replace(info, healing=cfg.recovery.method), healed, meta, items=healed_items)
    planned = planned_out(plans, cfg.model)
    return [{**r, "planned_out": planned.get(r["benchmark"], "")} for r in rows]


def split_items(stages: Mapping[str, Mapping]) -> tuple[dict, dict]:
    """A trial's item_scores.json ({"stage<i>": {benchmark: {item: score}}}) as benchmark -> items,
    as pruned and as healed: a healed trial scores each benchmark again in a later stage."""
    pruned: dict = {}
    healed: dict = {}
    for _, benchmarks in sorted(stages.items(), key=lambda kv: int(kv[0].removeprefix("stage"))):
        for name, scores in benchmarks.items():
            (healed if name in pruned else pruned)[name] = scores
    return pruned, healed


def read_items(cfg: TrialConfig) -> dict:
    """The item_scores.json a trial left in its folder ({} where it has none, or none yet)."""
    path = Path(cfg.artifact_dir or "") / ITEM_SCORES
    return json.loads(path.read_text()) if cfg.artifact_dir and path.is_file() else {}


def planned_out(plans: Mapping[str, Mapping] | None, model: str) -> dict[str, str]:
    """Benchmark -> why, for each task the items plan of ``model`` (hub id or folder, as the
    plans are keyed: glu_ray.sweep.items.record) left out. Its pilot read the baseline on more items
    than the floor the trials then score it on, so the plan's verdict stands over theirs."""
    plan = (plans or {}).get(model) or {}
    return {t["name"]: f"the items plan left it out (pilot {t['score']:.3f}): {t['why'].removeprefix('left out: ')}"
            for t in plan.get("tasks", ()) if t.get("left_out")}


def from_sweep(trials: Iterable[TrialConfig], rows: Mapping[str, Mapping],
               plans: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """The sweep's own result: its trials and their ledger rows (``Ledger.results()``); trials
    with no row yet are left out. ``plans``: its items plans (``glu_ray.sweep.items.record``)."""
    out: list[dict] = []
    for cfg in trials:
        row = rows.get(cfg.key)
        if row is not None:
            out += trial_rows(cfg, row, row[STATUS], plans, read_items(cfg))
    return tidy_frame(out)
