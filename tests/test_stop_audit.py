"""The early-stopping audit on synthetic runs whose answer is known by construction."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.stop_audit import audit_points, audit_summary, summary_text, threshold_from, would_stop
from analysis.tidy import COLUMNS
from glu_ray.trials.stop_rule import StopRule

# (method, ratio) -> (stage-0 ppl, hellaswag acc, piqa acc); baseline ppl 10, hellaswag 0.60, piqa 0.80
RUNS = {
    ("baseline", 4.0): (10.0, 0.60, 0.80),
    ("random", 3.2): (12.0, 0.55, 0.78),
    ("random", 2.4): (20.0, 0.45, 0.70),
    ("maw", 3.2): (40.0, 0.40, 0.70),   # 4x baseline, still well above chance on both
    ("maw", 2.4): (90.0, 0.26, 0.66),   # 9x: hellaswag at chance, piqa alive
    ("vow", 3.2): (300.0, 0.25, 0.51),  # 30x: dead everywhere
    ("vow", 2.4): (2000.0, 0.24, 0.50),  # 200x: dead
    ("pon", 3.2): (float("inf"), math.nan, math.nan),  # stopped: no downstream evidence
}


def tidy(runs=RUNS, model="M", stderr=0.005) -> pd.DataFrame:
    rows = []
    for (method, ratio), (ppl, hs, pq) in runs.items():
        status = "stopped: catastrophic" if math.isinf(ppl) else "completed"
        common = dict(model=model, size="1B", variant="base", method=method, expansion_ratio=ratio,
                      pruning_pct=100 * (1 - ratio / 4), width=ratio * 64, status=status)
        rows.append({**common, "benchmark": "ppl", "capability": "language modelling", "score": ppl,
                     "stderr": math.nan, "direction": "lower", "chance": math.nan, "score_name": "word_perplexity"})
        for bench, score, chance in (("hellaswag", hs, 0.25), ("piqa", pq, 0.5)):
            rows.append({**common, "benchmark": bench, "capability": "commonsense", "score": score,
                         "stderr": stderr, "direction": "higher", "chance": chance, "score_name": "acc"})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_points_pair_perplexity_ratio_with_downstream_state():
    p = audit_points(tidy()).set_index(["method", "ratio"])
    assert ("pon", 3.2) not in p.index  # stopped: not evidence
    assert p.loc[("maw", 3.2), "ppl_x_baseline"] == pytest.approx(4.0)
    assert p.loc[("maw", 3.2), "ppl_x_control"] == pytest.approx(40 / 12)
    assert p.loc[("maw", 2.4), "ppl_x_control"] == pytest.approx(90 / 20)
    assert p.loc[[("random", 3.2), ("random", 2.4)], "ppl_x_control"].isna().all()  # the control against itself: no evidence
    assert (p.loc[("maw", 2.4), "informative"], p.loc[("maw", 2.4), "above_chance"]) == (2, 1)
    assert p.loc[("maw", 3.2), "mean_retention"] == pytest.approx(((0.40 - .25) / .35 + (0.70 - .5) / .3) / 2)
    assert p["dead"].to_dict() == {("maw", 2.4): False, ("maw", 3.2): False, ("random", 2.4): False,
                                   ("random", 3.2): False, ("vow", 2.4): True, ("vow", 3.2): True}


def test_summary_finds_the_ratio_past_which_everything_is_at_chance():
    s = audit_summary(audit_points(tidy())).set_index("reference")
    assert s.loc["baseline", "alive_max"] == pytest.approx(9.0)
    assert s.loc["baseline", "dead_from"] == pytest.approx(30.0)
    assert s.loc["baseline", "recommended"] == pytest.approx(math.sqrt(9 * 30))
    assert s.loc["control", "alive_max"] == pytest.approx(4.5)
    assert s.loc["control", "dead_from"] == pytest.approx(300 / 12)
    assert s.loc["baseline", "points"] == 6 and s.loc["baseline", "dead_points"] == 2
    assert s.loc["control", "points"] == 4  # maw's and vow's: random's own runs are no points against itself


def test_the_default_rule_is_audited_against_the_data():
    points = audit_points(tidy())
    hit = would_stop(points, "baseline", 3.0).set_index(["method", "ratio"])
    assert sorted(hit.index) == [("maw", 2.4), ("maw", 3.2), ("vow", 2.4), ("vow", 3.2)]
    assert int(hit["wrongly"].sum()) == 2  # both MAW runs were still informative
    text = summary_text(audit_summary(points), points, rules=(StopRule(threshold=3.0), StopRule(threshold=30.0)))
    assert "ppl > 3 x baseline would stop 4 of 6 runs, 2 of them still above chance" in text
    assert "ppl > 30 x baseline would stop 1 of 6 runs, 0 of them still above chance" in text
    assert "recommended threshold 16.4" in text


def test_noise_decides_what_counts_as_above_chance():
    # With stderr 0.09 (a --limit 30 run), piqa 0.66 is within 1.96 stderrs of 0.5: maw 2.4 counts as dead.
    p = audit_points(tidy(stderr=0.09)).set_index(["method", "ratio"])
    assert bool(p.loc[("maw", 2.4), "dead"])


def test_a_benchmark_at_chance_in_the_baseline_is_not_evidence():
    runs = {k: (ppl, hs, 0.5) for k, (ppl, hs, _) in RUNS.items()}  # piqa at chance even unpruned
    p = audit_points(tidy(runs)).set_index(["method", "ratio"])
    assert (p["informative"] == 1).all()


def test_pooled_over_models_and_no_threshold_when_the_widest_point_is_alive():
    both = pd.concat([tidy(), tidy({k: v for k, v in RUNS.items() if k[0] != "vow"}, model="N")])
    s = audit_summary(audit_points(both))
    n = s[(s["model"] == "N") & (s["reference"] == "baseline")].iloc[0]
    assert math.isnan(n["recommended"]) and n["alive_max"] == pytest.approx(9.0)
    pooled = s[(s["model"] == "all models") & (s["reference"] == "baseline")].iloc[0]
    assert pooled["points"] == 10 and pooled["recommended"] == pytest.approx(math.sqrt(9 * 30))


def test_threshold_from_edge_cases():
    import numpy as np

    everything_dead = threshold_from(np.array([5.0, 7.0]), np.array([True, True]))
    assert math.isnan(everything_dead["alive_max"]) and everything_dead["recommended"] == 5.0
    # a dead run below an alive one does not count: dead_from lies above every alive ratio
    mixed = threshold_from(np.array([2.0, 4.0, 8.0]), np.array([True, False, True]))
    assert (mixed["alive_max"], mixed["dead_from"]) == (4.0, 8.0)
