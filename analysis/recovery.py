"""What healing brings back: retention before and after, the recovered share, and what recovers least.

Rows of the tidy table with ``healing != "none"`` are a pruned model measured again after
healing (glu_ray.recovery); each pairs with the same run's unhealed row and the model's baseline.
Per benchmark, the recovered share is ``(after - before) / (baseline - before)``: 0 = healing
changed nothing, 1 = back to the baseline, < 0 = healing made it worse. Scores are accuracies as
measured and perplexities as log-perplexity (cross-entropy), so a share of a perplexity gap is a
share of the lost nats. The interval is a bootstrap of all three scores: paired over the items
where all three kept their scores item by item (the same resample for each, as the fragility
intervals are), else over Normal(score, stderr) of each. Where pruning cost less than noise
(``gap`` below two combined stderrs, or 0.01), there is nothing to recover and the share is left
empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import fragility as F
from analysis.findings import analyse
from analysis.tidy import BASELINE, ratio_key
from glu_ray.vocab import NOT_HEALED

NONE = NOT_HEALED
POINT = ["model", "size", "variant", "method", "healing", "ratio"]  # one healed trial
MIN_GAP = 0.01
SHARE_COLUMNS = [*POINT, "benchmark", "capability", "retention_before", "retention_after", "recovered_share",
                 "lo", "hi", "gap", "paired_items"]
SCORES = ("score_base", "score_before", "score")  # baseline, pruned, healed: their items are items_base, ...


@dataclass(frozen=True)
class Recovery:
    shares: pd.DataFrame  # per healed trial and benchmark: retention before/after, recovered share [lo, hi]
    capabilities: pd.DataFrame  # per healed trial and capability: mean share, pooled draw by draw
    hierarchy: pd.DataFrame  # shares, least recovered first per trial, with tier / tied_with
    side_by_side: pd.DataFrame  # fragility hierarchy before vs after healing, per benchmark
    capabilities_side_by_side: pd.DataFrame  # the same per capability


def _healing(df: pd.DataFrame) -> pd.Series:
    """Each row's healing; rows built without the column (older sources) were not healed. (An
    all-missing column reads as float64: as object, fillna takes the string.)"""
    return df["healing"].astype(object).fillna(NONE) if "healing" in df else pd.Series(NONE, index=df.index)


def has_healing(df: pd.DataFrame) -> bool:
    return bool((_healing(df) != NONE).any())


def unhealed(df: pd.DataFrame) -> pd.DataFrame:
    """The table as pruning left it: what every other analysis reads."""
    return df[_healing(df) == NONE]


def _log_if_lower(score: np.ndarray, lower: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lower, np.log(score), score)


def _joined(df: pd.DataFrame) -> pd.DataFrame:
    """Each healed row with its unhealed twin (``_before``) and the baseline (``_base``)."""
    df = df.assign(ratio=ratio_key(df))
    keys = ["model", "variant", "benchmark"]
    df = df if "items" in df else df.assign(items=None)
    base = df[df["method"] == BASELINE][[*keys, "score", "stderr", "items"]]
    pruned = df[(df["method"] != BASELINE) & (df["healing"] == NONE)]
    healed = df[df["healing"] != NONE]
    twin = ["model", "variant", "method", "ratio", "benchmark"]
    out = healed.merge(pruned[[*twin, "score", "stderr", "items"]], on=twin, suffixes=("", "_before"))
    return out.merge(base, on=keys, suffixes=("", "_base")).reset_index(drop=True)


def _draws(j: pd.DataFrame, n: int, rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """[n, rows] draws of (baseline, before, after) on the share's scale, and each row's items
    paired: where all three kept their items, one resample of the items they share for the three
    (F.paired_scores), so what healing left alone cancels out; else each from Normal(score, stderr)."""
    lower = (j["direction"] == "lower").to_numpy()
    drawn = [j[c].to_numpy(float) + rng.standard_normal((n, len(j))) * np.nan_to_num(
        j[c.replace("score", "stderr")].to_numpy(float)) for c in SCORES]
    paired = np.zeros(len(j), int)
    for row in range(len(j)):
        three = pd.DataFrame({"score": [j.at[row, c] for c in SCORES],
                              "items": [j.at[row, c.replace("score", "items")] for c in SCORES]})
        got = F.paired_scores(three, n, rng)
        if got is not None:
            for k in range(3):
                drawn[k][:, row] = got[0][:, k]
            paired[row] = got[1]
    return tuple(_log_if_lower(d, lower) for d in drawn), paired


def recovered_shares(df: pd.DataFrame, *, n_boot: int = F.N_BOOT, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Per healed trial and benchmark: retention before and after, recovered share with a 95%
    bootstrap interval. Also returns each row's share draws (row key -> [n_boot]) for pooling."""
    j = _joined(df)
    if j.empty:
        return pd.DataFrame(columns=SHARE_COLUMNS), {}
    lower = (j["direction"] == "lower").to_numpy()
    base, before, after = (_log_if_lower(j[c].to_numpy(float), lower) for c in ("score_base", "score_before", "score"))
    (b, p, h), paired = _draws(j, n_boot, np.random.default_rng(seed))
    gap = base - before  # perplexities: negative, as is a recovery (after - before), so the share is positive
    se_gap = np.hypot(*(np.nan_to_num(_scale_se(j, c, lower)) for c in ("base", "before")))
    nothing = np.abs(gap) < np.maximum(2 * se_gap, MIN_GAP)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (after - before) / gap
        share_draws = (h - p) / (b - p)
    share[nothing] = np.nan
    share_draws[:, nothing] = np.nan
    lo, hi = np.full(len(j), np.nan), np.full(len(j), np.nan)
    lo[~nothing], hi[~nothing] = np.nanpercentile(share_draws[:, ~nothing], [2.5, 97.5], axis=0)
    ret_before = _retention(j, "score_before")
    ret_after = _retention(j, "score")
    out = j.assign(retention_before=ret_before, retention_after=ret_after, recovered_share=share, lo=lo, hi=hi,
                   gap=gap, paired_items=paired)
    keys = [tuple(r) for r in out[[*POINT, "benchmark"]].itertuples(index=False)]
    return out[SHARE_COLUMNS], dict(zip(keys, share_draws.T))


def _scale_se(j: pd.DataFrame, which: str, lower: np.ndarray) -> np.ndarray:
    """A stderr on the share's scale: d ln(x) = dx / x for perplexities."""
    score = j["score_base" if which == "base" else "score_before"].to_numpy(float)
    se = j["stderr_base" if which == "base" else "stderr_before"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lower, se / score, se)


def _retention(j: pd.DataFrame, col: str) -> np.ndarray:
    lower = (j["direction"] == "lower").to_numpy()
    chance = j["chance"].fillna(0).to_numpy(float)
    base = j["score_base"].to_numpy(float)
    near = (base - chance) < np.maximum(2 * j["stderr_base"].fillna(0).to_numpy(float), F.NEAR_CHANCE)
    return F._retention(j[col].to_numpy(float), base, chance, lower, ~lower & near)


def capability_shares(shares: pd.DataFrame, draws: dict) -> pd.DataFrame:
    """Each capability's recovered share: its benchmarks' shares averaged, draw by draw."""
    rows = []
    scorable = shares.dropna(subset=["recovered_share"])
    for (*point, cap), members in scorable.groupby(POINT + ["capability"], sort=True):
        keys = [tuple(r) for r in members[[*POINT, "benchmark"]].itertuples(index=False)]
        pooled = np.nanmean([draws[k] for k in keys], axis=0)
        lo, hi = np.nanpercentile(pooled, [2.5, 97.5])
        rows.append({**dict(zip(POINT, point)), "capability": cap,
                     "retention_before": members["retention_before"].mean(),
                     "retention_after": members["retention_after"].mean(),
                     "recovered_share": members["recovered_share"].mean(), "lo": lo, "hi": hi,
                     "benchmarks": ", ".join(members["benchmark"])})
    return pd.DataFrame(rows, columns=[*POINT, "capability", "retention_before", "retention_after",
                                       "recovered_share", "lo", "hi", "benchmarks"])


def least_recovered(shares: pd.DataFrame, label: str = "benchmark") -> pd.DataFrame:
    """Least recovered first within each healed trial, tiered like the fragility hierarchy
    (1 - share plays fragility's part: the more that stays lost, the higher)."""
    scorable = shares.dropna(subset=["recovered_share"])
    lost = scorable.assign(fragility=1 - scorable["recovered_share"], lo=1 - scorable["hi"], hi=1 - scorable["lo"])
    ranked = F.hierarchy(lost, label, group=POINT)
    return ranked.assign(lo=1 - ranked["hi"], hi=1 - ranked["lo"]).drop(columns="fragility")


def healed_as_pruned(df: pd.DataFrame, healing: str) -> pd.DataFrame:
    """The baselines and one healing's rows, as if healing were the pruning: the fragility
    analysis of this table is the hierarchy after healing."""
    return df[(df["method"] == BASELINE) & (df["healing"] == NONE) | (df["healing"] == healing)]


SIDE = ["model", "variant", "method"]


def side_by_side(before: pd.DataFrame, after: dict[str, pd.DataFrame], label: str = "benchmark") -> pd.DataFrame:
    """Fragility hierarchies before and after each healing, joined row by row (rank, tier, fragility)."""
    keep = [*SIDE, label, "fragility", "lo", "hi", "rank", "tier"]
    parts = []
    for healing, hier in after.items():
        both = before[keep].merge(hier[keep], on=[*SIDE, label], suffixes=("_before", "_after"))
        both.insert(3, "healing", healing)
        both["fragility_change"] = both["fragility_after"] - both["fragility_before"]
        parts.append(both.sort_values([*SIDE, "rank_before"]))
    cols = [*SIDE, "healing", label] + [f"{c}_{w}" for w in ("before", "after") for c in ("fragility", "lo", "hi", "rank", "tier")]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols + ["fragility_change"])


def recovery(df: pd.DataFrame, before, *, n_boot: int = F.N_BOOT, seed: int = 0) -> Recovery:
    """Everything the report says about healing. ``before`` is the Analysis of ``unhealed(df)``."""
    df = df.assign(healing=_healing(df))
    shares, draws = recovered_shares(df, n_boot=n_boot, seed=seed)
    caps = capability_shares(shares, draws)
    after = {h: analyse(healed_as_pruned(df, h), n_boot=n_boot, seed=seed)
             for h in sorted(set(df["healing"]) - {NONE})}
    return Recovery(
        shares=shares, capabilities=caps,
        hierarchy=least_recovered(shares),
        side_by_side=side_by_side(before.hierarchy, {h: a.hierarchy for h, a in after.items()}),
        capabilities_side_by_side=side_by_side(before.capabilities, {h: a.capabilities for h, a in after.items()},
                                               "capability"),
    )


INTRO = """A healed trial's model is evaluated again after healing (same suite), against its own model
before healing and the unpruned baseline. Recovered share = (after - before) / (baseline - before)
per benchmark: 0 = healing changed nothing, 1 = back to the baseline, below 0 = worse than before
(perplexities on the log scale: the share of the lost cross-entropy won back). 95% bootstrap
interval: paired over the items all three runs kept item by item (paired_items: how many), else
from the stderrs of all three scores; empty where pruning cost less than noise. A capability
pools its benchmarks' shares draw by draw. Least recovered first; a shared tier marks a tie."""
SHARE_TABLE = ["model", "variant", "method", "healing", "ratio", "rank", "tier", "benchmark", "capability",
               "retention_before", "retention_after", "recovered_share", "lo", "hi", "paired_items", "tied_with"]
SIDE_TABLE = ["model", "variant", "method", "healing", "{label}", "rank_before", "fragility_before",
              "rank_after", "fragility_after", "fragility_change"]


def sections(rec: Recovery) -> list[tuple[str, pd.DataFrame | str]]:
    """The report's recovery sections, in order."""
    caps = least_recovered(rec.capabilities, "capability")
    cap_cols = [c if c != "benchmark" else "benchmarks" for c in SHARE_TABLE]
    side = [c.format(label="benchmark") for c in SIDE_TABLE]
    cap_side = [c.format(label="capability") for c in SIDE_TABLE]
    return [("Recovery after healing", INTRO),
            ("Recovered share by capability (least recovered first)", caps[[c for c in cap_cols if c in caps]]),
            ("Recovered share by benchmark (least recovered first)", rec.hierarchy[SHARE_TABLE]),
            ("Fragility hierarchy by capability: before and after healing", rec.capabilities_side_by_side[cap_side]),
            ("Fragility hierarchy by benchmark: before and after healing", rec.side_by_side[side])]


def write_csvs(rec: Recovery, out) -> None:
    rec.shares.to_csv(out / "recovery_shares.csv", index=False)
    rec.capabilities.to_csv(out / "recovery_capabilities.csv", index=False)
    rec.side_by_side.to_csv(out / "recovery_side_by_side.csv", index=False)
    rec.capabilities_side_by_side.to_csv(out / "recovery_capabilities_side_by_side.csv", index=False)
