"""Replay a stop rule over a finished sweep's ledger: which trials it would have stopped, and the
trial seconds that would have saved. No Ray, no model: only the stage-0 results already recorded.

Run a sweep once with early stopping off (every trial evaluated fully), then replay candidate
rules on it (``python sweeps/full_grid.py ... --replay``) instead of rerunning the sweep.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from glu_ray.sweep.ledger import FINAL, Ledger
from glu_ray.sweep.stop_rule import StopRule
from glu_ray.sweep.trial import PPL_KEY

COLUMNS = ["model", "metric", "width", "status", "ppl", "ppl_x_baseline", "ppl_x_control", "would_stop",
           "reason", "seconds", "stage0_seconds", "saved_seconds"]


def _stage_seconds(ledger: Ledger) -> dict[str, tuple[float, float]]:
    """Trial key -> (seconds at the end of stage 0, seconds at its last stage), latest attempt."""
    out: dict[str, tuple[float, float]] = {}
    for e in ledger.events():
        if e.kind != "result" or "trial/seconds" not in e.data:
            continue
        secs = float(e.data["trial/seconds"])
        out[e.key] = (secs, secs) if e.stage == 0 else (out.get(e.key, (math.nan, math.nan))[0], secs)
    return out


def replay(rule: StopRule, ledger_path: str | Path) -> pd.DataFrame:
    """One row per finished pruned trial in the ledger, with the rule's decision on its stage 0.

    ``saved_seconds``: what stopping after stage 0 would have saved (its later stages' seconds);
    NaN for a trial that was stopped in the run itself (its later stages were never timed)."""
    ledger = Ledger(ledger_path)
    rows, secs = ledger.results(), _stage_seconds(ledger)
    done = [(k, r) for k, r in rows.items() if r.get("status") in FINAL and PPL_KEY in r]
    base = {r["model"]: float(r[PPL_KEY]) for _, r in done if r.get("metric") == "none"}
    control = {(r["model"], r["width"]): float(r[PPL_KEY]) for _, r in done if r.get("metric") == rule.control_metric}
    out = []
    for key, r in done:
        if r.get("metric") == "none":
            continue
        ppl, b = float(r[PPL_KEY]), base.get(r["model"])
        c = None if r["metric"] == rule.control_metric else control.get((r["model"], r["width"]))
        decision = rule.decide(ppl, b, c)
        stage0, total = secs.get(key, (math.nan, math.nan))
        ran_on = not str(r["status"]).startswith("stopped")
        saved = (total - stage0) if decision.stop and ran_on else (math.nan if decision.stop else 0.0)
        out.append({"model": r.get("model_name", r["model"]), "metric": r["metric"], "width": r["width"],
                    "status": r["status"], "ppl": ppl, "ppl_x_baseline": ppl / b if b else math.nan,
                    "ppl_x_control": ppl / c if c else math.nan, "would_stop": decision.stop,
                    "reason": decision.reason, "seconds": total, "stage0_seconds": stage0, "saved_seconds": saved})
    return pd.DataFrame(out, columns=COLUMNS).sort_values(["model", "metric", "width"], ascending=[True, True, False],
                                                         ignore_index=True)


def replay_text(rule: StopRule, table: pd.DataFrame) -> str:
    """The table and its bottom line: stopped trials, seconds saved of the sweep's total."""
    if table.empty:
        return f"replay of '{rule.describe()}': no finished pruned trial with a stage-0 perplexity in the ledger"
    total = table["seconds"].sum()
    saved = table["saved_seconds"].sum()
    shown = table.drop(columns=["reason"]).to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")
    return (f"replay of '{rule.describe()}' over {len(table)} pruned trials:\n{shown}\n"
            f"would stop {int(table['would_stop'].sum())} of {len(table)}; saves {saved:.0f} of {total:.0f} "
            f"trial-seconds ({100 * saved / total if total else 0:.0f}%)")
