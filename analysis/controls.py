"""Each importance metric against the random-pruning control, at equal width and at equal perplexity.

A metric that beats random at the same width may only be pruning more gently: data-driven metrics
and MAW reach the same stage-0 perplexity at different widths. So every completed pruned run is
compared with random twice:

- **at equal width**: random's score at the same width (the mean over its runs there: seeds);
- **at equal perplexity**: random's score where random's stage-0 word perplexity equals the run's,
  interpolated linearly in log perplexity between random's measured widths, each seed along its own
  curve (seeds reach different perplexities at one width), then averaged over the seeds whose
  measured range holds the run's perplexity. No extrapolation: a run whose perplexity lies outside
  every seed's range gets NaN there. A table that does not say which seed a run had blends the
  seeds' mean at each width instead.

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

LABELS = ("same_width", "same_ppl")
COLUMNS = ("model", "method", "benchmark", "capability", "width", "pruning_pct", "stage0_ppl", "score",
           "random_same_width", "random_same_ppl", "advantage_same_width", "advantage_same_ppl",
           "se_same_width", "se_same_ppl", "paired_same_width", "paired_same_ppl", "seeds_same_width", "seeds_same_ppl")


def _completed_pruned(df: pd.DataFrame) -> pd.DataFrame:
    done = df[(df["status"] == TrialStatus.COMPLETED.value) & (df["method"] != BASELINE)]
    return done[done["healing"] == NOT_HEALED] if "healing" in done else done


def _with_stage0(runs: pd.DataFrame) -> pd.DataFrame:
    """Each row with its run's stage-0 word perplexity (``stage0_ppl``): the mean where runs share
    model, method, width and seed (seeds the table does not name). NaN seeds join as equal."""
    keys = ["model", "method", "width", "seed"]
    ppl = runs[runs["benchmark"] == STAGE0.name].groupby(keys, dropna=False, as_index=False)["score"].mean()
    return runs.merge(ppl.rename(columns={"score": "stage0_ppl"}), on=keys, how="left")


def pool_replicates(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that differ only by seed (the random control's replicates: ``--control-seeds``) become one
    row per benchmark: the mean score, its stderr sqrt(sum se^2) / n, each item's mean score where
    every replicate kept its items, and ``replicates`` = n. Runs
    with another status stay apart (a seed stopped as catastrophic is not averaged with one that ran
    on). A table without replicates comes back as it is."""
    pooled = ("score", "stderr", "stderr_source", "items", "seed", *COST_COLUMNS)
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
    if "seed" in df.columns:
        aggs["seed"] = ("seed", lambda seeds: seeds.iloc[0] if len(seeds) == 1 else np.nan)  # pooled: no one seed
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
    the same width and at the same stage-0 perplexity, the signed advantages (see module doc) and
    their stderrs: paired item by item where the run and random's runs kept their items."""
    runs = _completed_pruned(df)
    runs = runs if "seed" in runs else runs.assign(seed=np.nan)
    control = runs["method"] == CONTROL_METRIC
    mine_all = _with_stage0(pool_replicates(runs[~control]))
    rand_all = _with_stage0(runs[control])  # seed by seed: each has its own perplexity curve
    out = []
    for (model, bench), rand in rand_all[rand_all["benchmark"] != STAGE0.name].groupby(["model", "benchmark"]):
        rand = rand.sort_values(["seed", "width"]).reset_index(drop=True)
        mine = mine_all[(mine_all["model"] == model) & (mine_all["benchmark"] == bench)]
        for run in mine.itertuples(index=False):
            same_width = [{int(i): 1.0} for i in np.flatnonzero(rand["width"].to_numpy() == run.width)]
            same_ppl = _same_ppl_blends(run.stage0_ppl, rand)
            out.append({"model": model, "method": run.method, "benchmark": bench, "capability": run.capability,
                        "width": run.width, "pruning_pct": run.pruning_pct, "stage0_ppl": run.stage0_ppl,
                        "score": run.score, **_versus(run, rand, same_width, "same_width"),
                        **_versus(run, rand, same_ppl, "same_ppl"),
                        "seeds_same_width": len(same_width), "seeds_same_ppl": len(same_ppl)})
    return pd.DataFrame(out, columns=list(COLUMNS))


def _same_ppl_blends(x: float, rand: pd.DataFrame) -> list[dict[int, float]]:
    """Per seed of random that reaches stage-0 perplexity ``x``: row -> weight of its runs whose
    blend is that seed at ``x``, interpolated along its own widths (rows the table cannot tell apart
    by seed share their width's weight, their perplexity the mean)."""
    blends = []
    for _, seed in rand.groupby("seed", dropna=False, sort=True):
        rows = [g.index for _, g in seed.groupby("width", sort=True)]  # a width's runs of this seed
        weights = _interp_weights(x, np.array([seed.loc[r, "stage0_ppl"].mean() for r in rows], dtype=float))
        blends.append({int(i): w / len(rows[k]) for k, w in weights.items() for i in rows[k]})
    return [b for b in blends if b]


def _interp_weights(x: float, xs: np.ndarray) -> dict[int, float]:
    """Position -> weight of the measured points whose blend is the value at ``x``, linear in log x
    between its two neighbours ({} outside them: no extrapolation)."""
    keep = np.flatnonzero(np.isfinite(xs) & (xs > 0))
    if not np.isfinite(x) or x <= 0 or keep.size == 0 or not xs[keep].min() <= x <= xs[keep].max():
        return {}
    order = keep[np.argsort(xs[keep])]
    hi = int(np.searchsorted(xs[order], x))
    if xs[order[hi]] == x:
        return {int(order[hi]): 1.0}
    lo_i, hi_i = int(order[hi - 1]), int(order[hi])
    t = (np.log(x) - np.log(xs[lo_i])) / (np.log(xs[hi_i]) - np.log(xs[lo_i]))
    return {lo_i: float(1 - t), hi_i: float(t)}


def _versus(run, rand: pd.DataFrame, blends: list[dict[int, float]], label: str) -> dict[str, float]:
    """Random's score (the mean of its seeds' ``blends``), the run's signed advantage over it and that
    advantage's stderr. Items: from the item-by-item differences where the run and the blended runs
    share items, else from their stderrs as independent. Seeds: where two or more are averaged,
    their spread (stderr of their mean) adds in quadrature, since random is itself a draw."""
    if not blends:
        nan = float("nan")
        return {f"random_{label}": nan, f"advantage_{label}": nan, f"se_{label}": nan, f"paired_{label}": 0}
    weights: dict[int, float] = {}
    for blend in blends:
        for i, w in blend.items():
            weights[i] = weights.get(i, 0.0) + w / len(blends)
    sign = 1.0 if run.direction == "higher" else -1.0
    seeds = [sum(w * rand.at[i, "score"] for i, w in blend.items()) for blend in blends]
    control = float(np.mean(seeds))
    items = [run.items, *(rand.at[i, "items"] for i in weights)] if "items" in rand else [None]
    shared = sorted(set.intersection(*map(set, items))) if all(isinstance(x, Mapping) for x in items) else []
    if len(shared) > 1:
        diffs = np.array([run.items[k] - sum(w * rand.at[i, "items"][k] for i, w in weights.items()) for k in shared])
        se = float(diffs.std(ddof=1) / np.sqrt(len(diffs)))
    else:
        se = float(np.sqrt(run.stderr ** 2 + sum((w * rand.at[i, "stderr"]) ** 2 for i, w in weights.items())))
    spread = float(np.std(seeds, ddof=1) / np.sqrt(len(seeds))) if len(seeds) > 1 else 0.0
    return {f"random_{label}": control, f"advantage_{label}": float(sign * (run.score - control)),
            f"se_{label}": float(np.hypot(se, spread)), f"paired_{label}": len(shared) if len(shared) > 1 else 0}


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method, benchmark): the mean advantage over random at equal width and at equal
    perplexity, over how many widths each was measured, and the strongest width's z (advantage /
    its stderr, signed: |z| > 2 is a difference beyond noise at that width)."""
    columns = ["model", "method", "benchmark"] + [f"{c}_{label}" for label in LABELS
                                                  for c in ("mean_advantage", "widths", "strongest_z")]
    if table.empty:
        return pd.DataFrame(columns=columns)
    parts = {}
    for label in LABELS:
        z = table.assign(z=table[f"advantage_{label}"] / table[f"se_{label}"].where(table[f"se_{label}"] > 0))
        grouped = z.groupby(["model", "method", "benchmark"])
        parts[f"mean_advantage_{label}"] = grouped[f"advantage_{label}"].mean()
        parts[f"widths_{label}"] = grouped[f"advantage_{label}"].count()
        parts[f"strongest_z_{label}"] = grouped["z"].agg(_strongest)
    return pd.DataFrame(parts).reset_index()[columns]


def _strongest(z: pd.Series) -> float:
    z = z.dropna()
    return float(z.loc[z.abs().idxmax()]) if len(z) else float("nan")
