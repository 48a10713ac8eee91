"""Replay a stop rule over a finished sweep's ledger: which trials it would have stopped, and the
trial time that would have saved. No Ray, no model: only the stage-0 results already recorded.

Run a sweep once with early stopping off (every trial evaluated fully), then replay candidate
rules on it (``python sweeps/full_grid.py ... --replay``) instead of rerunning the sweep.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from glu_ray.trials.ledger import Ledger
from glu_ray.trials.stop_rule import StopRule
from glu_ray.vocab import METRIC, MODEL, MODEL_NAME, PPL_WORD, PRUNING_PCT, STATUS, TRIAL_CPU_SECONDS, TRIAL_SECONDS, \
    WIDTH, TrialStatus

COLUMNS = ["model", "metric", "width", "status", "ppl", "ppl_x_baseline", "ppl_x_control", "would_stop", "reason",
           "seconds", "saved_seconds", "cpu_seconds", "saved_cpu_seconds"]
_CLOCKS = {"seconds": TRIAL_SECONDS, "cpu_seconds": TRIAL_CPU_SECONDS}


def _stage_times(ledger: Ledger, key_name: str) -> dict[str, tuple[float, float]]:
    """Trial key -> (time at the end of stage 0, time at its last stage) on one clock, latest attempt."""
    out: dict[str, tuple[float, float]] = {}
    for e in ledger.events():
        if e.kind != "result" or key_name not in e.data:
            continue
        t = float(e.data[key_name])
        out[e.key] = (t, t) if e.stage == 0 else (out.get(e.key, (math.nan, math.nan))[0], t)
    return out


def replay(rule: StopRule, ledger_path: str | Path) -> pd.DataFrame:
    """One row per finished pruned trial in the ledger, with the rule's decision on its stage 0.

    ``saved_*``: what stopping after stage 0 would have saved (the trial's later stages); NaN for a
    trial stopped in the run itself (its later stages were never timed)."""
    ledger = Ledger(ledger_path)
    rows = ledger.results()
    times = {col: _stage_times(ledger, key) for col, key in _CLOCKS.items()}
    done = [(k, r) for k, r in rows.items() if TrialStatus(r[STATUS]).final and PPL_WORD in r]
    # The baseline is the run with nothing pruned (by number: ledgers older than vocab.BASELINE spell it "none").
    base = {r[MODEL]: float(r[PPL_WORD]) for _, r in done if r[PRUNING_PCT] == 0}
    control = {(r[MODEL], r[WIDTH]): float(r[PPL_WORD]) for _, r in done if r[METRIC] == rule.control_metric}
    out = []
    for key, r in done:
        if r[PRUNING_PCT] == 0:
            continue
        ppl, b = float(r[PPL_WORD]), base.get(r[MODEL])
        c = None if r[METRIC] == rule.control_metric else control.get((r[MODEL], r[WIDTH]))
        decision = rule.decide(ppl, b, c)
        ran_on = not TrialStatus(r[STATUS]).stopped
        row = {"model": r.get(MODEL_NAME, r[MODEL]), "metric": r[METRIC], "width": r[WIDTH], "status": r[STATUS],
               "ppl": ppl, "ppl_x_baseline": ppl / b if b else math.nan, "ppl_x_control": ppl / c if c else math.nan,
               "would_stop": decision.stop, "reason": decision.reason}
        for col, by_key in times.items():
            stage0, total = by_key.get(key, (math.nan, math.nan))
            row[col] = total
            row[f"saved_{col}"] = (total - stage0 if ran_on else math.nan) if decision.stop else 0.0
        out.append(row)
    table = pd.DataFrame(out, columns=COLUMNS)
    return table.sort_values(["model", "metric", "width"], ascending=[True, True, False], ignore_index=True)


def replay_text(rule: StopRule, table: pd.DataFrame) -> str:
    """The table and its bottom line: trials stopped, time saved of the pruned trials' total."""
    if table.empty:
        return f"replay of '{rule.describe()}': no finished pruned trial with a stage-0 perplexity in the ledger"
    shown = table.drop(columns=["reason"]).to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")
    lines = [f"replay of '{rule.describe()}' over {len(table)} pruned trials:", shown,
             f"would stop {int(table['would_stop'].sum())} of {len(table)}"]
    for col in _CLOCKS:
        total, saved = table[col].sum(), table[f"saved_{col}"].sum()
        if total > 0:
            lines.append(f"  saves {saved:.0f} of {total:.0f} trial {col.replace('_', ' ')} ({100 * saved / total:.0f}%)")
    return "\n".join(lines)
