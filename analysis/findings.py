"""Everything the report states, computed from the tidy table: hierarchies, curve shapes, base vs
instruct, the study's delta table, and verdicts on its four expected insights.

Verdicts are rules over the numbers (registry HYPOTHESES); nothing here assumes a hypothesis holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import fragility as F
from analysis.tidy import BASELINE

TOL = 0.05  # retention change that counts where no stderr says otherwise
Z = 1.96


@dataclass(frozen=True)
class Analysis:
    retention: pd.DataFrame  # one row per point (incl. baselines): rel_change, retention, ...
    hierarchy: pd.DataFrame  # per curve, most fragile first, with tier / tied_with
    capabilities: pd.DataFrame  # per (group, capability), same columns
    shapes: pd.DataFrame  # per curve: monotone | non-monotonic, with trough and recovery
    base_vs_instruct: pd.DataFrame  # empty unless both variants exist for a size and method
    hypotheses: pd.DataFrame  # id, claim, verdict, evidence
    # baselines not above chance (fragility.left_out): out of the hierarchies, shapes and verdicts
    left_out: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=F.LEFT_OUT))
    # per group, the most against the least fragile capability (fragility.separation)
    separation: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=F.SEPARATION))


def analyse(df: pd.DataFrame, *, n_boot: int = F.N_BOOT, seed: int = 0) -> Analysis:
    ret = F.retention(df)
    dropped = F.left_out(df)  # from the table: a baseline at 0 with chance 0 has no retention row at all
    kept = F.without(ret, dropped)
    scores, mean_draws, point_se = F.score_curves(kept, n_boot=n_boot, seed=seed)
    hier = F.hierarchy(scores)
    shapes = curve_shapes(kept, point_se)
    caps = F.hierarchy(F.capability_scores(scores, mean_draws), "capability")
    return Analysis(ret, hier, caps, shapes, base_vs_instruct(scores), verdicts(kept, hier, shapes, point_se), dropped,
                    F.separation(caps, F.capability_draws(scores, mean_draws)))


def _significant(delta: float, se: float) -> bool:
    return delta > max(TOL, Z * se)


def curve_shapes(ret: pd.DataFrame, point_se: dict) -> pd.DataFrame:
    """A curve is non-monotonic when, narrowing from the baseline, retention dips at some ratio and
    later climbs back by more than noise (Z combined stderrs, at least TOL): the U-curve."""
    rows = []
    for key, curve in F.curves(ret).items():
        y, se, x = curve["retention"].to_numpy(float), point_se[key], curve["ratio"].to_numpy(float)
        best = (0.0, None, None)  # recovery, trough index, recovery index
        for j in range(2, len(y)):
            i = 1 + int(np.argmin(y[1:j]))  # trough among pruned points before j
            rise = y[j] - y[i]
            if _significant(rise, float(np.hypot(se[i], se[j]))) and rise > best[0]:
                best = (rise, i, j)
        rise, i, j = best
        rows.append({**dict(zip(F.CURVE, key)),
                     "shape": "monotone" if i is None else "non-monotonic",
                     "trough_ratio": np.nan if i is None else x[i],
                     "trough_retention": np.nan if i is None else y[i],
                     "recovers_to": np.nan if j is None else y[j],
                     "at_ratio": np.nan if j is None else x[j]})
    return pd.DataFrame(rows, columns=[*F.CURVE, "shape", "trough_ratio", "trough_retention", "recovers_to", "at_ratio"])


def base_vs_instruct(scores: pd.DataFrame) -> pd.DataFrame:
    """Fragility of the same benchmark in base and instruct models of one size and method."""
    keys = ["size", "method", "benchmark"]
    base, inst = (scores[scores["variant"] == v] for v in ("base", "instruct"))
    both = base.merge(inst, on=keys, how="inner", suffixes=("_base", "_instruct")).set_index(keys)
    if both.empty:
        return pd.DataFrame(columns=keys + ["fragility_base", "fragility_instruct", "difference", "overlap"])
    out = both[["capability_base", "fragility_base", "lo_base", "hi_base",
                "fragility_instruct", "lo_instruct", "hi_instruct"]].reset_index()
    out["difference"] = out["fragility_instruct"] - out["fragility_base"]
    out["overlap"] = (out["lo_instruct"] <= out["hi_base"]) & (out["lo_base"] <= out["hi_instruct"])
    return out.rename(columns={"capability_base": "capability"})


def delta_table(ret: pd.DataFrame) -> pd.DataFrame:
    """The study's table: per model and expansion ratio (widest first), each benchmark's score
    with its plain % change from the baseline, e.g. ``0.2689 (-13.6%)``."""
    def cell(row) -> str:
        if row["method"] == BASELINE:
            return f"{row['score']:.4g}"
        return f"{row['score']:.4g} ({100 * row['rel_change']:+.1f}%)"

    t = ret.assign(cell=ret.apply(cell, axis=1), ratio_label=ret["ratio"].map(lambda r: f"{r:g}x"))
    wide = t.pivot_table(index=["model", "variant", "method", "ratio", "ratio_label"], columns="benchmark",
                         values="cell", aggfunc="first")
    return wide.sort_index(level=["model", "variant", "ratio"], ascending=[True, True, False]).reset_index()


# ---------------------------------------------------------------- the four expected insights

@dataclass(frozen=True)
class Hypothesis:
    id: int
    claim: str
    prefix: str  # benchmarks it is about: names starting with this
    # (curve points, its hierarchy row, its shape row, its points' retention stderrs) -> (holds, why)
    holds: Callable[[pd.DataFrame, pd.Series, pd.Series, np.ndarray], tuple[bool, str]]


def _degrades(points, score, shape, se) -> tuple[bool, str]:
    return score["lo"] > 0, f"mean retention {score['mean_retention']:.2f} (fragility CI {score['lo']:.2f}..{score['hi']:.2f})"


def _preserved(points, score, shape, se) -> tuple[bool, str]:
    ok = score["hi"] < 1 - PRESERVED_AT
    return bool(ok), f"mean retention {score['mean_retention']:.2f}, rank {score['rank']} of {score['of']}"


def _improves(points, score, shape, se) -> tuple[bool, str]:
    pruned = ~points["is_base"].to_numpy(bool)
    up = [_significant(r - 1, s) for r, s in zip(points["retention"].to_numpy()[pruned], se[pruned])]
    return sum(up) > len(up) / 2, f"{sum(up)}/{len(up)} ratios above baseline"


def _non_monotonic(points, score, shape, se) -> tuple[bool, str]:
    s = shape
    if s["shape"] == "monotone":
        return False, "monotone"
    return True, (f"dips to {s['trough_retention']:.2f} at {s['trough_ratio']:g}x, "
                  f"back to {s['recovers_to']:.2f} at {s['at_ratio']:g}x")


PRESERVED_AT = 0.8  # "preserved": mean retention reliably above 0.8 (fragility CI below 0.2)
HYPOTHESES = (
    Hypothesis(1, "Knowledge (MMLU) degrades", "mmlu", _degrades),
    Hypothesis(2, "Context processing (LAMBADA) is preserved", "lambada", _preserved),
    Hypothesis(3, "Truthfulness (TruthfulQA) may improve", "truthfulqa", _improves),
    Hypothesis(4, "BoolQ is non-monotonic (U-curve)", "boolq", _non_monotonic),
)


def _verdict(results: list[bool]) -> str:
    if not results:
        return "no data"
    return "supported" if all(results) else "not supported" if not any(results) else "mixed"


def verdicts(ret: pd.DataFrame, hier: pd.DataFrame, shapes: pd.DataFrame, point_se: dict) -> pd.DataFrame:
    """One row per hypothesis: the verdict over every curve it concerns, and the evidence."""
    hier = hier.assign(of=hier.groupby(F.GROUP)["rank"].transform("max"))
    curves, shapes = F.curves(ret), shapes.set_index(F.CURVE)
    rows = []
    for h in HYPOTHESES:
        results, evidence = [], []
        for _, score in hier[hier["benchmark"].str.startswith(h.prefix)].iterrows():
            key = tuple(score[c] for c in F.CURVE)
            ok, why = h.holds(curves[key], score, shapes.loc[key], point_se[key])
            results.append(bool(ok))
            evidence.append(f"{score['model']} {score['benchmark']}: {'yes' if ok else 'no'}, {why}")
        rows.append({"id": h.id, "claim": h.claim, "verdict": _verdict(results), "evidence": "; ".join(evidence)})
    return pd.DataFrame(rows)
