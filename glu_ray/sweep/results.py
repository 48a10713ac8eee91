"""The sweep's results table: one row per trial, with its status and headline numbers."""

from __future__ import annotations

import pandas as pd

from glu_ray.vocab import (DECODE_TOK_S, PPL_RATIO, PPL_WORD, STATUS, TrialStatus, efficiency_key, healed_key,
                           ratio_label)


def results_table(trials, rows: dict[str, dict]) -> pd.DataFrame:
    """Trials in grid order; a trial with no ledger row yet is PENDING."""
    records = []
    healing = any(c.recovery is not None for c in trials)
    short = any(c.eval.stage0_only for c in trials)  # --stage0-only: say why those rows have no scores
    for cfg in trials:
        row = rows.get(cfg.key, {})
        rec = {
            "trial": cfg.name,
            "status": TrialStatus(row.get(STATUS, TrialStatus.PENDING)).value,
            "width": cfg.width.width,
            "ratio": ratio_label(cfg.width.expansion_ratio),
            "pruned_%": round(cfg.width.pruning_pct, 1),
            "ppl": row.get(PPL_WORD),
            "ppl_x": row.get(PPL_RATIO),
            **({"stages": "0 only" if cfg.eval.stage0_only else "all"} if short else {}),
        }
        for b in cfg.eval.load_suite().benchmarks:  # cached: one load per EvalSpec
            rec[f"{b.name}/{b.metric}"] = row.get(b.key)
        if healing:  # --recover: the healed model beside the pruned one
            rec["healed_ppl"] = row.get(healed_key(PPL_WORD))
            rec["healed_ppl_x"] = row.get(healed_key(PPL_RATIO))
        if cfg.efficiency is not None:  # --measure-efficiency: the smallest batch's decode speed
            rec["decode_tok/s"] = row.get(efficiency_key(DECODE_TOK_S, min(cfg.efficiency.batches)))
        records.append(rec)
    return pd.DataFrame.from_records(records)


def format_table(df: pd.DataFrame) -> str:
    return df.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")


def trial_status_counts(df: pd.DataFrame) -> str:
    return ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
