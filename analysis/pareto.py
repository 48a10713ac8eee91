"""What a point on the fragility curve buys: retention against measured cost, and the Pareto front.

Per trial (one model, variant, method and expansion ratio; the unpruned baseline joins every
method's group), retention is averaged over the benchmarks it was scored on, with a 95% interval
from resampling each score (and its baseline's) within its stderr. Costs are run-level columns
of the tidy table (analysis.tidy.COST_COLUMNS): decode tokens/s at batch 1 (more is better),
parameters and energy per generated token (less is better). A trial is on an axis's front when
no other trial of its group keeps at least as much retention at an equal or better cost, with
one of the two strictly better. A cost that was not measured (energy on a machine without a
counter) leaves that axis empty: never a front of zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import fragility as F
from analysis.tidy import BASELINE, COST_COLUMNS

GROUP = ["model", "size", "variant", "method"]
N_BOOT = 1000


@dataclass(frozen=True)
class Axis:
    column: str  # a cost column of the tidy table
    label: str
    higher_is_better: bool
    short: str  # how the front column and the report name it


AXES = (
    Axis("decode_tok_s", "decode tokens/s (batch 1)", True, "speed"),
    Axis("params", "parameters", False, "params"),
    Axis("energy_j_per_tok", "energy per generated token, J (batch 1)", False, "energy"),
)
POINT = ["model", "size", "variant", "method", "ratio", "pruning_pct"]


def _row_draws(ret: pd.DataFrame, n: int, rng: np.random.Generator) -> np.ndarray:
    """[rows, n] retention of each (trial, benchmark) row, score and baseline resampled within
    their stderrs; baselines stay 1, trials stopped before a benchmark stay at the floor."""
    def noisy(col: str, se: str) -> np.ndarray:
        return ret[col].to_numpy(float)[:, None] + rng.standard_normal((len(ret), n)) * np.nan_to_num(ret[se].to_numpy(float))[:, None]

    lower = (ret["direction"] == "lower").to_numpy()[:, None]
    near = (ret["form"] == "ratio").to_numpy()[:, None]
    draws = F._retention(noisy("score", "stderr"), noisy("base_score", "base_stderr"),
                         np.nan_to_num(ret["chance"].to_numpy(float))[:, None], lower, near)
    draws[(ret["method"] == BASELINE).to_numpy()] = 1.0
    draws[ret["score"].isna().to_numpy()] = 0.0
    return draws


def trial_points(ret: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per trial: mean retention over its benchmarks (lo, hi) and its cost columns."""
    ret = ret.reset_index(drop=True)
    draws = _row_draws(ret, n_boot, np.random.default_rng(seed))
    rows = []
    for key, idx in ret.groupby(POINT, sort=True, dropna=False).groups.items():
        pts = ret.loc[idx]
        means = draws[idx].mean(axis=0)
        lo, hi = np.nanpercentile(means, [2.5, 97.5])
        costs = {c: pts[c].iloc[0] for c in COST_COLUMNS}
        rows.append({**dict(zip(POINT, key)), "retention": float(pts["retention"].mean()), "lo": lo, "hi": hi,
                     "benchmarks": len(pts), **costs})
    return pd.DataFrame(rows, columns=[*POINT, "retention", "lo", "hi", "benchmarks", *COST_COLUMNS])


def on_front(retention: np.ndarray, cost: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """True where no other point has retention >= and cost at least as good, one strictly. NaN cost: False."""
    c = -cost if higher_is_better else cost  # lower is better from here on
    ok = ~np.isnan(c)
    front = np.zeros(len(c), bool)
    for i in np.flatnonzero(ok):
        better = ok & (retention >= retention[i]) & (c <= c[i]) & ((retention > retention[i]) | (c < c[i]))
        front[i] = not better.any()
    return front


def pareto(ret: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Trial points of every (model, variant, method) group (its baseline included), with one
    ``front_<axis>`` column per cost axis and ``front``, the axes a trial is on the front of."""
    points = trial_points(ret, n_boot=n_boot, seed=seed)
    base, pruned = points[points["method"] == BASELINE], points[points["method"] != BASELINE]
    parts = []
    for key, grp in pruned.groupby(GROUP, sort=True):
        anchor = base[(base["model"] == key[0]) & (base["variant"] == key[2])].assign(method=key[3])
        grp = pd.concat([anchor.assign(is_base=True), grp.assign(is_base=False)], ignore_index=True)
        for ax in AXES:
            grp[f"front_{ax.short}"] = on_front(grp["retention"].to_numpy(float), grp[ax.column].to_numpy(float),
                                                ax.higher_is_better)
        parts.append(grp.sort_values("ratio", ascending=False, kind="stable"))
    columns = [*points.columns, "is_base", *(f"front_{ax.short}" for ax in AXES), "front"]
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    out["front"] = [", ".join(ax.short for ax in AXES if row[f"front_{ax.short}"]) for _, row in out.iterrows()]
    return out[columns]


def measured_axes(table: pd.DataFrame) -> list[Axis]:
    return [ax for ax in AXES if ax.column in table and table[ax.column].notna().any()]


def front_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per group and measured axis: the configurations on its front, widest first."""
    rows = []
    for key, grp in table.groupby(GROUP, sort=True):
        for ax in measured_axes(grp):
            on = grp[grp[f"front_{ax.short}"]]
            names = [BASELINE if b else f"{r:g}x" for r, b in zip(on["ratio"], on["is_base"])]
            rows.append({**dict(zip(GROUP, key)), "axis": ax.label, "on the front": ", ".join(names)})
    return pd.DataFrame(rows, columns=[*GROUP, "axis", "on the front"])
