"""Fragility intervals paired over items against intervals from independent stderrs, on a sweep.

The report's intervals resample the items every run of a curve shares (analysis.fragility): what
the baseline and a pruned model both answer cancels out. This prints, for each curve and each
capability of a sweep whose trials kept their item scores, both intervals' widths and their
ratio, and whether each capability hierarchy's ends separate either way (their intervals apart, and
the interval of their difference).

    python bench/paired_intervals.py --experiment smol --tracking-uri sqlite:///RUNS/smol/mlflow.db
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from analysis import fragility as F
from analysis.controls import pool_replicates
from analysis.load import from_mlflow
from analysis.recovery import unhealed
from analysis.tidy import finished


def intervals(df: pd.DataFrame, n_boot: int, seed: int) -> dict[str, pd.DataFrame]:
    """Curve and capability scores of ``df`` as the report draws them (its left-out benchmarks out)."""
    ret = F.without(F.retention(df), F.left_out(df))
    scores, draws, _ = F.score_curves(ret, n_boot=n_boot, seed=seed)
    caps = F.hierarchy(F.capability_scores(scores, draws), "capability")
    return {"curves": scores, "capabilities": caps, "separation": F.separation(caps, F.capability_draws(scores, draws))}


def compare(df: pd.DataFrame, n_boot: int = F.N_BOOT, seed: int = 0) -> dict[str, pd.DataFrame]:
    paired, independent = intervals(df, n_boot, seed), intervals(df.assign(items=None), n_boot, seed)
    out = {}
    for kind, keys in (("curves", F.CURVE), ("capabilities", [*F.GROUP, "capability"])):
        both = paired[kind].merge(independent[kind], on=keys, suffixes=("", "_indep"))
        both = both.assign(width=both["hi"] - both["lo"], width_indep=both["hi_indep"] - both["lo_indep"])
        out[kind] = both.assign(narrower=both["width_indep"] / both["width"])
    keep = [*F.GROUP, "separated", "difference_lo", "difference_hi"]
    out["separation"] = paired["separation"].merge(independent["separation"][keep], on=F.GROUP, suffixes=("", "_indep"))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiment", required=True)
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--n-boot", type=int, default=F.N_BOOT)
    p.add_argument("--json", help="write the tables here too")
    args = p.parse_args(argv)
    df = unhealed(pool_replicates(finished(from_mlflow(args.experiment, args.tracking_uri))[0]))  # as the report reads it
    out = compare(df, args.n_boot)
    cols = {"curves": ["method", "benchmark", "paired_items", "fragility", "lo", "hi", "lo_indep", "hi_indep", "narrower"],
            "capabilities": ["method", "capability", "fragility", "lo", "hi", "lo_indep", "hi_indep", "narrower"],
            "separation": ["method", "most_fragile", "most_lo", "most_hi", "least_fragile", "least_lo", "least_hi",
                           "separated", "separated_indep", "difference", "difference_lo", "difference_hi", "items_factor",
                           "difference_lo_indep", "difference_hi_indep"]}
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        for kind, table in out.items():
            print(f"\n{kind}\n{table[cols[kind]].round(3).to_string(index=False)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v.drop(columns="items", errors="ignore").to_dict("records") for k, v in out.items()}, f,
                      indent=1, default=str)
    return out


if __name__ == "__main__":
    main()
