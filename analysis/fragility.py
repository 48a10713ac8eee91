"""How much of each benchmark survives as the MLP narrows: retention, fragility, hierarchy, shapes.

Pure pandas/numpy on the tidy table (analysis.tidy). A *curve* is one (model, variant, method,
benchmark): its baseline point (retention 1 at the native ratio) plus the pruned points. Models are
aligned on expansion ratio (tidy.ratio_key: 2 decimals, more where a model's widths need them),
never on pruning %: 2.4x is 40% on 1B, 10% on 3B.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.tidy import BASELINE, ratio_key
from glu_ray.evaluation.power import MIN_LEAD, Z as CHANCE_Z
from glu_ray.vocab import TrialStatus

CURVE = ["model", "size", "variant", "method", "benchmark"]
GROUP = ["model", "size", "variant", "method"]
NEAR_CHANCE = 0.02  # a baseline this close to chance has no headroom to normalise by
BREAK = 0.5  # "broken" = below half of the baseline's headroom
N_BOOT = 4000  # draws: the 2.5% tail then rests on 100 of them, so an interval's ends move little between seeds
MIN_PAIRED = 10  # fewer shared items than this: their bootstrap is too coarse, use the stderrs


def _retention(score, base, chance, lower, near):
    """Retention, vectorised. Accuracies: share of the baseline's headroom above chance kept
    (plain ratio when there is no headroom). Perplexities: baseline over current log-perplexity,
    i.e. the ratio of per-token cross-entropies, which stays in (0, 1] as the model degrades."""
    with np.errstate(divide="ignore", invalid="ignore"):
        chance_form = (score - chance) / (base - chance)
        ratio_form = score / base
        log_form = np.log(base) / np.log(score)
    return np.where(lower, log_form, np.where(near, ratio_form, chance_form))


def retention(df: pd.DataFrame) -> pd.DataFrame:
    """Each pruned row with its baseline's score, the plain relative change (the study's delta),
    and retention (1 = as the baseline, 0 = at chance / broken). Baseline rows are kept with 1."""
    df = df.assign(ratio=ratio_key(df))
    base = df[df["method"] == BASELINE][["model", "variant", "benchmark", "score", "stderr"]]
    out = df.merge(base.rename(columns={"score": "base_score", "stderr": "base_stderr"}),
                   on=["model", "variant", "benchmark"], how="inner")
    lower = (out["direction"] == "lower").to_numpy()
    chance = out["chance"].fillna(0).to_numpy()
    headroom = out["base_score"] - chance
    out["form"] = np.where(lower, "log", np.where(headroom < _near_margin(out), "ratio", "chance"))
    out["rel_change"] = out["score"] / out["base_score"] - 1
    out["retention"] = _retention(out["score"].to_numpy(), out["base_score"].to_numpy(), chance,
                                  lower, (out["form"] == "ratio").to_numpy())
    # A trial the sweep stopped as catastrophic never ran its later benchmarks: it sits at the floor.
    stopped = out["score"].isna() & (out["status"] == TrialStatus.STOPPED.value)
    out.loc[stopped, "retention"] = 0.0
    return out.dropna(subset=["retention"]).reset_index(drop=True)


def _near_margin(df: pd.DataFrame) -> pd.Series:
    return np.maximum(2 * df["base_stderr"].fillna(0), NEAR_CHANCE)


def informative(base, chance, base_stderr) -> np.ndarray:
    """The baseline is above chance by more than CHANCE_Z stderrs and MIN_LEAD (vectorised
    glu_ray.evaluation.power.above_chance, the rule items were sized by); a score without a
    chance level (a perplexity) always is."""
    chance = pd.Series(chance, dtype=float)
    lead = pd.Series(base, dtype=float).to_numpy() - chance.fillna(0).to_numpy()
    margin = np.maximum(CHANCE_Z * pd.Series(base_stderr, dtype=float).fillna(0).to_numpy(), MIN_LEAD)
    return chance.isna().to_numpy() | (lead > margin)


def planned_out(df: pd.DataFrame) -> pd.Series:
    """Why the sweep's items plan left each row's benchmark out ("" where it did not, or where the
    table has no such column: a frame built by hand)."""
    if "planned_out" not in df:
        return pd.Series("", index=df.index)
    return pd.Series([v if isinstance(v, str) else "" for v in df["planned_out"]], index=df.index)


LEFT_OUT = ["model", "variant", "benchmark", "capability", "score", "chance", "stderr", "why"]


def left_out(df: pd.DataFrame) -> pd.DataFrame:
    """The baselines of the tidy table not above chance, and the benchmarks the sweep's items plan
    left out (its pilot read the baseline on more items than the trials' floor): their benchmark
    says nothing about what pruning takes away, so it stays out of the hierarchy (one row per
    model, variant and benchmark)."""
    base = df[(df["method"] == BASELINE) & (df["direction"] == "higher") & df["score"].notna()].drop_duplicates(
        ["model", "variant", "benchmark"])
    planned = planned_out(base)
    out = base[~informative(base["score"], base["chance"], base["stderr"]) | (planned != "")]
    why = [p or f"{s:.3f} is not above chance {c:g} by {CHANCE_Z:g} stderrs ({e:.3f}) and {MIN_LEAD:g}"
           for s, c, e, p in zip(out["score"], out["chance"], out["stderr"].fillna(0), planned[out.index])]
    return out.assign(why=why)[LEFT_OUT].reset_index(drop=True)


def without(ret: pd.DataFrame, dropped: pd.DataFrame) -> pd.DataFrame:
    """``ret`` less the (model, variant, benchmark) rows of ``dropped``."""
    keys = ["model", "variant", "benchmark"]
    marked = ret.merge(dropped[keys].assign(_drop=True), on=keys, how="left")
    return marked[marked["_drop"].isna()].drop(columns="_drop").reset_index(drop=True)


def curves(ret: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Curve key -> its points sorted from widest to narrowest, each pruned method with the baseline."""
    base = ret[ret["method"] == BASELINE]
    out = {}
    for key, pts in ret[ret["method"] != BASELINE].groupby(CURVE, sort=True):
        anchor = base[(base["model"] == key[0]) & (base["variant"] == key[2]) & (base["benchmark"] == key[4])]
        both = pd.concat([anchor.assign(method=key[3], is_base=True), pts.assign(is_base=False)])
        out[key] = both.sort_values("ratio", ascending=False, kind="stable").reset_index(drop=True)
    return out


def retention_draws(curve: pd.DataFrame, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """([n, points] retention draws, items paired). Where every scored point of the curve kept its
    scores item by item, a paired bootstrap: each draw resamples the items the points share, the
    same resample for every point, so what the baseline and a pruned model both got right (or
    wrong) cancels out of their difference. Else each score is drawn from Normal(score, stderr),
    one baseline draw per row shared by every point (they all divide by it); missing stderrs add
    no noise, and items paired is 0."""
    paired = paired_scores(curve, n, rng)
    if paired is not None:
        score, shared = paired
        base = score[:, :1]  # the baseline anchor is the curve's first point
    else:
        first, shared = curve.iloc[0], 0
        base = first["base_score"] + rng.standard_normal((n, 1)) * np.nan_to_num(first["base_stderr"])
        score = curve["score"].to_numpy() + rng.standard_normal((n, len(curve))) * np.nan_to_num(curve["stderr"].to_numpy())
    chance = np.nan_to_num(curve["chance"].to_numpy())
    draws = _retention(score, base, chance, (curve["direction"] == "lower").to_numpy(),
                       (curve["form"] == "ratio").to_numpy())
    draws[:, curve["is_base"].to_numpy(bool)] = 1.0
    draws[:, curve["score"].isna().to_numpy()] = 0.0  # stopped as catastrophic: the floor
    return draws, shared


def paired_scores(curve: pd.DataFrame, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
    """[n, points] scores, each draw the mean over one resample of the items every scored point
    shares (a point never scored gets 0: it is the floor anyway), and how many items that is; None
    where a scored point has no items, or they share fewer than MIN_PAIRED."""
    scored = curve["score"].notna().to_numpy()
    kept = [items for items, ok in zip(curve["items"] if "items" in curve else [None] * len(curve), scored) if ok]
    if not kept or not all(isinstance(items, Mapping) for items in kept):
        return None
    shared = sorted(set.intersection(*(set(items) for items in kept)))
    if len(shared) < MIN_PAIRED:
        return None
    table = np.zeros((len(curve), len(shared)))
    for row, (items, ok) in enumerate(zip(curve["items"], scored)):
        if ok:
            table[row] = [items[k] for k in shared]
    # How often each draw picks each item (a resample with replacement), so a suite of thousands of
    # items never builds a [points, draws, items] array.
    counts = rng.multinomial(len(shared), np.full(len(shared), 1 / len(shared)), size=n)
    return counts @ table.T / len(shared), len(shared)


def mean_retention(ratios: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Area under retention over the ratio range, divided by the range: the curve's mean level."""
    order = np.argsort(ratios)
    x, y = ratios[order], draws[..., order]
    span = x[-1] - x[0]
    return np.trapezoid(y, x, axis=-1) / span if span > 0 else y.mean(axis=-1)


def break_ratio(ratios: np.ndarray, ret: np.ndarray) -> float:
    """The largest (widest) measured ratio whose retention is below one half; NaN if none."""
    below = ratios[ret < BREAK]
    return float(below.max()) if below.size else float("nan")


def score_curves(ret: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> tuple[pd.DataFrame, dict, dict]:
    """Per curve: mean retention with a bootstrap interval, fragility (1 - mean retention, so
    higher = more fragile) and break ratio. Also returns the draws (curve -> [n_boot]) so
    capabilities can be pooled draw by draw, and each point's retention stderr (curve -> [points])."""
    rng = np.random.default_rng(seed)
    rows, mean_draws, point_se = [], {}, {}
    for key, curve in curves(ret).items():
        ratios = curve["ratio"].to_numpy(float)
        draws, paired = retention_draws(curve, n_boot, rng)
        means = mean_retention(ratios, draws)
        mean_draws[key], point_se[key] = means, draws.std(axis=0)
        est = float(mean_retention(ratios, curve["retention"].to_numpy(float)))
        lo, hi = np.nanpercentile(means, [2.5, 97.5])
        rows.append({**dict(zip(CURVE, key)), "capability": curve["capability"].iloc[-1],
                     "mean_retention": est, "fragility": 1 - est, "lo": 1 - hi, "hi": 1 - lo,
                     "break_ratio": break_ratio(ratios, curve["retention"].to_numpy(float)),
                     "points": len(curve) - 1, "paired_items": paired})
    # Explicit columns: with no scorable curve (e.g. every baseline at chance) the frame is empty
    # but still has its shape, so the hierarchy comes out empty instead of failing.
    columns = [*CURVE, "capability", "mean_retention", "fragility", "lo", "hi", "break_ratio", "points", "paired_items"]
    return pd.DataFrame(rows, columns=columns), mean_draws, point_se


def capability_draws(scores: pd.DataFrame, mean_draws: dict) -> dict[tuple, np.ndarray]:
    """(model, size, variant, method, capability) -> its mean-retention draws: its benchmarks'
    averaged draw by draw."""
    out = {}
    for (*group, cap), members in scores.groupby(GROUP + ["capability"], sort=True):
        keys = [tuple(r) for r in members[CURVE].itertuples(index=False)]
        out[(*group, cap)] = np.mean([mean_draws[k] for k in keys], axis=0)
    return out


def capability_scores(scores: pd.DataFrame, mean_draws: dict) -> pd.DataFrame:
    """Each capability's fragility, its interval from capability_draws."""
    rows = []
    draws = capability_draws(scores, mean_draws)
    for (*group, cap), members in scores.groupby(GROUP + ["capability"], sort=True):
        lo, hi = np.nanpercentile(draws[(*group, cap)], [2.5, 97.5])
        rows.append({**dict(zip(GROUP, group)), "capability": cap,
                     "fragility": float(members["fragility"].mean()), "lo": 1 - hi, "hi": 1 - lo,
                     "benchmarks": ", ".join(members["benchmark"])})
    return pd.DataFrame(rows, columns=[*GROUP, "capability", "fragility", "lo", "hi", "benchmarks"])


def hierarchy(scores: pd.DataFrame, label: str = "benchmark", group: list[str] = GROUP) -> pd.DataFrame:
    """Most fragile first within each ``group`` (model, variant, method), with ``tier``: a new tier
    starts only where an interval clears the current tier head's, so a shared tier marks a tie."""
    parts = []
    for _, grp in scores.groupby(group, sort=True):
        grp = grp.sort_values("fragility", ascending=False).reset_index(drop=True)
        tier, head, tiers = 0, None, []
        for i, row in grp.iterrows():
            if head is None or row["hi"] < grp.at[head, "lo"]:
                tier, head = tier + 1, i
            tiers.append(tier)
        grp["rank"] = range(1, len(grp) + 1)
        grp["tier"] = tiers
        grp["tied_with"] = [", ".join(grp.loc[(grp["tier"] == t) & (grp[label] != name), label])
                            for t, name in zip(grp["tier"], grp[label])]
        parts.append(grp)
    return pd.concat(parts, ignore_index=True) if parts else scores.assign(rank=[], tier=[], tied_with=[])


SEPARATION = [*GROUP, "most_fragile", "most_lo", "most_hi", "least_fragile", "least_lo", "least_hi", "separated",
              "difference", "difference_lo", "difference_hi", "items_factor", "no_interval"]


def separation(capabilities: pd.DataFrame, draws: dict[tuple, np.ndarray] | None = None) -> pd.DataFrame:
    """Per (model, variant, method): the most and the least fragile of the capabilities measured with
    an interval, their 95% intervals and whether those are apart (``separated``), and the difference
    of their fragilities with its own 95% interval, draw by draw from ``draws`` (capability_draws;
    NaN without). The difference's interval is the test of "the ends differ"; two intervals apart is
    the stricter reading (about p < 0.006 where both are normal). A capability whose interval has no
    width (a perplexity without a stderr: its noise is unmeasured, not zero) is no end: it is named
    in ``no_interval``. ``items_factor``: how many times the items the two intervals would need to
    be apart, were their estimates to hold (an interval narrows as 1 / sqrt(items)); below 1 where
    they already are, NaN where the ends do not differ."""
    rows = []
    for group, grp in capabilities.groupby(GROUP, sort=True):
        measured = grp[grp["hi"] > grp["lo"]].sort_values("fragility", ascending=False)
        if len(measured) < 2:
            continue
        most, least = measured.iloc[0], measured.iloc[-1]
        lo = hi = np.nan
        if draws:  # fragility = 1 - mean retention
            lo, hi = np.nanpercentile(draws[(*group, least["capability"])] - draws[(*group, most["capability"])],
                                      [2.5, 97.5])
        gap = most["fragility"] - least["fragility"]
        reach = (most["fragility"] - most["lo"]) + (least["hi"] - least["fragility"])  # the sides that face
        rows.append({**dict(zip(GROUP, group)), "most_fragile": most["capability"], "most_lo": most["lo"],
                     "most_hi": most["hi"], "least_fragile": least["capability"], "least_lo": least["lo"],
                     "least_hi": least["hi"], "separated": bool(most["lo"] > least["hi"]),
                     "difference": gap, "difference_lo": lo, "difference_hi": hi,
                     "items_factor": (reach / gap) ** 2 if gap > 0 else np.nan,
                     "no_interval": ", ".join(grp.loc[~grp.index.isin(measured.index), "capability"])})
    return pd.DataFrame(rows, columns=SEPARATION)
