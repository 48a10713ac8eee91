"""Audit of early stopping: does a trial's stage-0 perplexity ratio predict that its benchmarks are dead?

For every completed pruned run (stopped runs have no downstream evidence) the audit puts the
perplexity ratio beside its downstream retention: how many of the model's *informative*
benchmarks (baseline significantly above chance) are still above chance. Two signals:

- ``vs baseline``: perplexity / the unpruned model's (the rule ``ppl > t x baseline``);
- ``vs control``: perplexity / the random-pruning control's at the same width (``ppl > t x control``),
  where the run set has a control.

Per model and signal it reports the largest ratio at which some benchmark was still above chance
(``alive_max``: any threshold at or below it would have stopped an informative trial), the ratio
from which every measured run was at chance on every benchmark (``dead_from``), and a recommended
threshold between them (their geometric mean); ``all models`` pools the points (one threshold for
every model). The perplexity is the stage-0 benchmark ``ppl`` of a sweep, else WikiText.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.benchmarks import STAGE0
from analysis.fragility import informative, planned_out
from analysis.tidy import BASELINE, ratio_key
from glu_ray.trials.stop_rule import REFERENCES, StopRule
from glu_ray.vocab import TrialStatus

SIGNALS = (STAGE0.name, "wikitext")  # the perplexity read by the rule, in order of preference
Z = 1.96
AT_CHANCE = 0.1  # retention (share of the baseline's headroom) at or below which a score is "at chance"
ALL = "all models"
POINT_COLUMNS = ["model", "variant", "method", "ratio", "signal", "ppl_x_baseline", "ppl_x_control",
                 "informative", "above_chance", "mean_retention", "dead"]
SUMMARY_COLUMNS = ["model", "variant", "reference", "points", "dead_points", "alive_max", "dead_from", "recommended"]


def _signal(df: pd.DataFrame) -> str | None:
    present = set(df["benchmark"])
    return next((s for s in SIGNALS if s in present), None)


def _above_chance(score, base, chance, stderr) -> np.ndarray:
    """Above chance: above it by more than noise (Z stderrs) and by more than AT_CHANCE of the
    baseline's headroom (the published tables carry no stderrs for most benchmarks)."""
    margin = np.maximum(Z * np.nan_to_num(stderr), AT_CHANCE * (base - chance))
    return (score - chance) > margin


def audit_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per completed pruned run: its perplexity ratios and its downstream state."""
    signal = _signal(df)
    if signal is None:
        return pd.DataFrame(columns=POINT_COLUMNS)
    df = df.assign(ratio=ratio_key(df))
    run = ["model", "variant", "method", "ratio"]
    ppl = df[df["benchmark"] == signal].drop_duplicates(run)
    base_ppl = ppl[ppl["method"] == BASELINE].set_index(["model", "variant"])["score"]
    control = ppl[ppl["method"] == StopRule().control_metric].set_index(["model", "variant", "ratio"])["score"]

    base = df[(df["method"] == BASELINE)].set_index(["model", "variant", "benchmark"])
    acc = df[(df["direction"] == "higher") & df["chance"].notna() & (df["method"] != BASELINE)]
    acc = acc.join(base[["score", "stderr"]].rename(columns={"score": "base", "stderr": "base_se"}),
                   on=["model", "variant", "benchmark"], how="inner")
    kept = planned_out(acc) == ""  # the items plan's verdict, as fragility.left_out reads it
    acc = acc[informative(acc["base"], acc["chance"], acc["base_se"]) & kept & (acc["status"] == TrialStatus.COMPLETED.value)
              & acc["score"].notna()]
    acc = acc.assign(alive=_above_chance(acc["score"], acc["base"], acc["chance"], acc["stderr"]),
                     retention=(acc["score"] - acc["chance"]) / (acc["base"] - acc["chance"]))

    rows = []
    for key, grp in acc.groupby(run, sort=True):
        model, variant, method, ratio = key
        p = ppl[(ppl[run] == pd.Series(key, index=run)).all(axis=1)]["score"]
        if p.empty or (model, variant) not in base_ppl.index:
            continue
        # the control against itself is 1 by definition: no evidence for a "x control" threshold
        ctrl = math.nan if method == StopRule().control_metric else control.get((model, variant, ratio), math.nan)
        rows.append(dict(zip(run, key), signal=signal, ppl_x_baseline=float(p.iloc[0] / base_ppl[(model, variant)]),
                         ppl_x_control=float(p.iloc[0] / ctrl) if ctrl == ctrl else math.nan,
                         informative=len(grp), above_chance=int(grp["alive"].sum()),
                         mean_retention=float(grp["retention"].mean()), dead=not grp["alive"].any()))
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def threshold_from(ratios: np.ndarray, dead: np.ndarray) -> dict:
    """alive_max: the largest ratio with a benchmark above chance; dead_from: the smallest ratio
    above every alive one where all runs are dead; recommended: their geometric mean (NaN when no
    run past the last alive one was measured: no threshold is supported by the data yet)."""
    ok = np.isfinite(ratios)
    ratios, dead = ratios[ok], dead[ok]
    alive_max = float(ratios[~dead].max()) if (~dead).any() else math.nan
    beyond = ratios[dead & ~(ratios <= alive_max)] if math.isfinite(alive_max) else ratios[dead]
    dead_from = float(beyond.min()) if beyond.size else math.nan
    if math.isfinite(alive_max) and math.isfinite(dead_from):
        recommended = math.sqrt(alive_max * dead_from)
    else:
        recommended = dead_from if not math.isfinite(alive_max) else math.nan
    return {"points": int(ratios.size), "dead_points": int(dead.sum()), "alive_max": alive_max,
            "dead_from": dead_from, "recommended": recommended}


def audit_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per (model, variant) and pooled over all models, for each signal with data."""
    rows = []
    groups = [((m, v), g) for (m, v), g in points.groupby(["model", "variant"], sort=True)]
    if len(groups) > 1:
        groups.append(((ALL, ""), points))
    for (model, variant), grp in groups:
        for reference in REFERENCES:
            col = f"ppl_x_{reference}"
            if grp[col].notna().any():
                rows.append({"model": model, "variant": variant, "reference": reference,
                             **threshold_from(grp[col].to_numpy(float), grp["dead"].to_numpy(bool))})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def would_stop(points: pd.DataFrame, reference: str, threshold: float) -> pd.DataFrame:
    """The runs a rule ``ppl > threshold x reference`` stops, with whether they were still alive."""
    col = f"ppl_x_{reference}"
    hit = points[points[col] > threshold]
    return hit.assign(wrongly=~hit["dead"])


NOTHING_TO_AUDIT = "no completed pruned run with a perplexity and an informative benchmark"


def summary_text(summary: pd.DataFrame, points: pd.DataFrame, rules: tuple[StopRule, ...] = (StopRule(),)) -> str:
    """The lines `glu-ray report` prints: per model, what the data supports, and what each rule
    (by default glu-ray's own) would have stopped that was still informative."""
    if summary.empty:
        return f"early-stopping audit: {NOTHING_TO_AUDIT}"
    lines = []
    for r in summary.itertuples(index=False):
        name = f"{r.model}{' ' + r.variant if r.variant else ''} vs {r.reference}"
        alive = f"still above chance up to {r.alive_max:.3g}x" if math.isfinite(r.alive_max) else "none above chance"
        dead = f"at chance everywhere from {r.dead_from:.3g}x" if math.isfinite(r.dead_from) else "never at chance everywhere"
        rec = (f"recommended threshold {r.recommended:.3g}" if math.isfinite(r.recommended)
               else f"no threshold supported yet (it must exceed {r.alive_max:.3g})")
        lines.append(f"  {name}: {r.points} runs, {r.dead_points} dead; {alive}, {dead}; {rec}")
    for rule in rules:
        hit = would_stop(points, rule.reference, rule.threshold)
        lines.append(f"  {rule.describe()} would stop {len(hit)} of {len(points)} runs, "
                     f"{int(hit['wrongly'].sum())} of them still above chance on some benchmark")
    return "early-stopping audit (stage-0 perplexity ratio vs downstream retention):\n" + "\n".join(lines)


AUDIT_INTRO = """Does early stopping stop only runs with nothing left to measure? For each completed pruned run:
its stage-0 perplexity over the baseline's (and over the random-pruning control's at the same
width), and how many informative benchmarks (baseline above chance by 2 stderrs and 0.02) it keeps
above chance (by 1.96 stderrs and 10% of the baseline's headroom). alive_max: the largest ratio with
a benchmark above chance; dead_from: the ratio from which every run is at chance everywhere;
recommended: their geometric mean, blank while no dead run lies past the last alive one."""
