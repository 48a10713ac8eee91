"""Each importance metric against the random-pruning control, at equal width and at equal perplexity.

A metric that beats random at the same width may only be pruning more gently: data-driven metrics
and MAW reach the same stage-0 perplexity at different widths. So every completed pruned run is
compared with random twice:

- **at equal width**: random's score at the same width (the mean over its runs there: seeds);
- **at equal perplexity**: random's score where random's stage-0 word perplexity equals the run's,
  interpolated linearly in log perplexity between random's measured widths. No extrapolation: a run
  whose perplexity lies outside random's measured range gets NaN there.

``advantage`` columns are signed so that positive means better than random (higher accuracy, lower
perplexity). A run with no random control in its model is left out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.benchmarks import STAGE0
from analysis.tidy import COST_COLUMNS
from glu_ray.trials.stop_rule import CONTROL_METRIC
from glu_ray.vocab import BASELINE, NOT_HEALED, TrialStatus

COLUMNS = ("model", "method", "benchmark", "capability", "width", "pruning_pct", "stage0_ppl", "score",
           "random_same_width", "random_same_ppl", "advantage_same_width", "advantage_same_ppl")


def _completed_pruned(df: pd.DataFrame) -> pd.DataFrame:
    done = df[(df["status"] == TrialStatus.COMPLETED.value) & (df["method"] != BASELINE)]
    return done[done["healing"] == NOT_HEALED] if "healing" in done else done


def _stage0(df: pd.DataFrame) -> pd.Series:
    """(model, method, width) -> the run's stage-0 word perplexity (mean over seeds)."""
    rows = df[df["benchmark"] == STAGE0.name]
    return rows.groupby(["model", "method", "width"])["score"].mean()


def _interp_log(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """ys at x, linear in log x between the measured points; NaN outside them (no extrapolation)."""
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0)
    xs, ys = xs[keep], ys[keep]
    if not np.isfinite(x) or x <= 0 or len(xs) == 0 or not xs.min() <= x <= xs.max():
        return float("nan")
    order = np.argsort(xs)
    return float(np.interp(np.log(x), np.log(xs[order]), ys[order]))


def pool_replicates(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that differ only by seed (the random control's replicates: ``--control-seeds``) become one
    row per benchmark: the mean score, its stderr sqrt(sum se^2) / n, each item's mean score where
    every replicate kept its items, and ``replicates`` = n. Runs
    with another status stay apart (a seed stopped as catastrophic is not averaged with one that ran
    on). A table without replicates comes back as it is."""
    pooled = ("score", "stderr", "stderr_source", "items", *COST_COLUMNS)
    keys = [c for c in df.columns if c not in pooled]
    if df.empty or not df.duplicated(keys).any():
        return df
    aggs = {c: (c, "mean") for c in ("score", *COST_COLUMNS) if c in df.columns}
    if "stderr" in df.columns:
        aggs["stderr"] = ("stderr", lambda s: np.sqrt((s ** 2).sum(min_count=1)) / len(s))
    if "stderr_source" in df.columns:
        aggs["stderr_source"] = ("stderr_source", "first")
    if "items" in df.columns:
        aggs["items"] = ("items", _mean_items)
    out = df.groupby(keys, dropna=False, sort=False).agg(**aggs, replicates=("score", "size")).reset_index()
    return out[[*df.columns, "replicates"]]


def _mean_items(replicates: pd.Series) -> dict | None:
    """Item -> the replicates' mean score, over the items they all kept (None unless each kept its)."""
    if not all(isinstance(items, Mapping) for items in replicates):
        return None
    shared = set.intersection(*(set(items) for items in replicates))
    return {k: sum(items[k] for items in replicates) / len(replicates) for k in sorted(shared)}


def versus_random(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (completed pruned run of a non-random metric, benchmark) with random's scores at
    the same width and at the same stage-0 perplexity, and the signed advantages (see module doc)."""
    runs = _completed_pruned(df)
    ppl = _stage0(runs)
    scores = runs[runs["benchmark"] != STAGE0.name]
    control = scores[scores["method"] == CONTROL_METRIC].groupby(["model", "benchmark", "width"])["score"].mean()
    out = []
    for (model, method, width, bench), group in scores.groupby(["model", "method", "width", "benchmark"]):
        if method == CONTROL_METRIC or model not in control.index.get_level_values(0):
            continue
        if bench not in control.loc[model].index.get_level_values(0):
            continue
        row = group.iloc[0]
        sign = 1.0 if row["direction"] == "higher" else -1.0
        mine = float(group["score"].mean())
        rand = control.loc[(model, bench)]  # width -> random's score
        same_width = float(rand.get(width, np.nan))
        rand_ppl = np.array([ppl.get((model, CONTROL_METRIC, w), np.nan) for w in rand.index], dtype=float)
        here = float(ppl.get((model, method, width), np.nan))
        same_ppl = _interp_log(here, rand_ppl, rand.to_numpy(dtype=float))
        out.append({"model": model, "method": method, "benchmark": bench, "capability": row["capability"],
                    "width": width, "pruning_pct": row["pruning_pct"], "stage0_ppl": here, "score": mine,
                    "random_same_width": same_width, "random_same_ppl": same_ppl,
                    "advantage_same_width": sign * (mine - same_width), "advantage_same_ppl": sign * (mine - same_ppl)})
    return pd.DataFrame(out, columns=list(COLUMNS))


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method, benchmark): the mean advantage over random at equal width and at equal
    perplexity, and over how many widths each was measured."""
    if table.empty:
        return pd.DataFrame(columns=["model", "method", "benchmark", "mean_advantage_same_width", "widths_same_width",
                                     "mean_advantage_same_ppl", "widths_same_ppl"])
    grouped = table.groupby(["model", "method", "benchmark"])
    return pd.DataFrame({
        "mean_advantage_same_width": grouped["advantage_same_width"].mean(),
        "widths_same_width": grouped["advantage_same_width"].count(),
        "mean_advantage_same_ppl": grouped["advantage_same_ppl"].mean(),
        "widths_same_ppl": grouped["advantage_same_ppl"].count(),
    }).reset_index()
