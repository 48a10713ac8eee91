"""The sweep's results table: one row per trial, with its status and headline numbers."""

from __future__ import annotations

import pandas as pd

from glu_ray.vocab import metric_key, ratio_label
from glu_ray.sweep.trial import PPL_KEY


def results_table(trials, rows: dict[str, dict]) -> pd.DataFrame:
    """Trials in grid order; a trial with no ledger row yet is 'pending'."""
    from glu_ray.evaluation.suites import load_suite

    records = []
    for cfg in trials:
        row = rows.get(cfg.key, {})
        rec = {
            "trial": cfg.name,
            "status": row.get("status", "pending"),
            "width": cfg.width,
            "ratio": ratio_label(cfg.expansion_ratio),
            "pruned_%": round(cfg.pruning_pct, 1),
            "ppl": row.get(PPL_KEY),
            "ppl_x": row.get("ppl/ratio_to_baseline"),
        }
        suite = load_suite(cfg.eval.suite, tasks=cfg.eval.tasks, tasks_dir=cfg.eval.tasks_dir)
        for b in suite.benchmarks:
            rec[f"{b.name}/{b.metric}"] = row.get(metric_key(b.name, b.metric, b.filter))
        records.append(rec)
    return pd.DataFrame.from_records(records)


def format_table(df: pd.DataFrame) -> str:
    return df.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")


def trial_status_counts(df: pd.DataFrame) -> str:
    return ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())


