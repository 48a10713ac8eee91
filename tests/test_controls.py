"""Metrics against random pruning at equal width and at equal stage-0 perplexity (analysis.controls)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.controls import summary, versus_random
from analysis.tidy import tidy_frame


def _rows(method, width, ppl, acc, lambada_ppl=None, status="completed"):
    base = {"model": "m", "size": "1M", "variant": "base", "method": method, "expansion_ratio": width / 10,
            "pruning_pct": 100 - width, "width": width, "status": status, "healing": "none", "stderr": 0.01}
    rows = [{**base, "benchmark": "ppl", "capability": "language modelling", "score": ppl, "direction": "lower"},
            {**base, "benchmark": "piqa", "capability": "physical", "score": acc, "direction": "higher",
             "chance": 0.5}]
    if lambada_ppl is not None:
        rows.append({**base, "benchmark": "lambada", "capability": "in-context", "score": lambada_ppl,
                     "direction": "lower"})
    return rows


@pytest.fixture
def frame():
    rows = _rows("baseline", 100, 8.0, 0.7, 5.0)
    for width, ppl, acc, lam in ((90, 10.0, 0.6, 6.0), (80, 20.0, 0.5, 9.0), (60, 40.0, 0.4, 20.0)):
        rows += _rows("random", width, ppl, acc, lam)
    rows += _rows("random", 80, 20.0, 0.54, 9.0)  # a second seed at 80: random's score there is the mean
    rows += _rows("maw", 80, 10.0, 0.55, 7.0)  # gentler than random at the same width
    rows += _rows("maw", 60, 80.0, 0.45)  # past random's measured perplexities: no equal-ppl point
    rows += _rows("vow", 80, 5000.0, math.nan, status="stopped: catastrophic")  # never compared
    return tidy_frame(rows)


def test_equal_width_and_equal_perplexity_can_disagree(frame):
    t = versus_random(frame).set_index(["method", "width", "benchmark"])
    piqa = t.loc[("maw", 80, "piqa")]
    assert piqa["random_same_width"] == pytest.approx(0.52)  # the two seeds' mean
    assert piqa["advantage_same_width"] == pytest.approx(0.03)  # beats random at its width ...
    assert piqa["random_same_ppl"] == pytest.approx(0.6)  # ... random at maw's perplexity (10) scores 0.6
    assert piqa["advantage_same_ppl"] == pytest.approx(-0.05)  # ... so at equal perplexity maw is worse


def test_perplexity_interpolates_in_log_and_never_extrapolates(frame):
    t = versus_random(frame).set_index(["method", "width", "benchmark"])
    assert math.isnan(t.loc[("maw", 60, "piqa"), "random_same_ppl"])  # 80 is past random's 40
    lam = t.loc[("maw", 80, "lambada")]
    assert lam["random_same_ppl"] == pytest.approx(6.0)  # ppl 10 is random's width-90 point
    assert lam["advantage_same_ppl"] == pytest.approx(-1.0)  # lower is better: 7 vs 6 is worse by 1


def test_log_interpolation_between_points():
    from analysis.controls import _interp_weights

    import numpy as np

    xs = np.array([40.0, np.nan, 10.0])  # random's widths in any order, one without a stage 0
    assert _interp_weights(20.0, xs) == pytest.approx({2: 0.5, 0: 0.5})  # 20 is halfway between 10 and 40 in log
    assert _interp_weights(10.0, xs) == {2: 1.0}
    assert _interp_weights(9.0, xs) == {} and _interp_weights(float("nan"), xs) == {}


def test_stopped_runs_random_itself_and_models_without_a_control_are_left_out(frame):
    t = versus_random(frame)
    assert set(t["method"]) == {"maw"}
    no_control = frame[frame["method"] != "random"]
    assert versus_random(no_control).empty and summary(versus_random(no_control)).empty
    s = summary(t).set_index(["method", "benchmark"])
    assert s.loc[("maw", "piqa"), "widths_same_width"] == 2 and s.loc[("maw", "piqa"), "widths_same_ppl"] == 1


def test_the_report_has_the_comparison_and_its_csv(frame, tmp_path):
    import pandas as pd

    from analysis.report import write_report

    report = write_report(frame, tmp_path, n_boot=20).read_text()
    assert "## Against random pruning: mean advantage per benchmark" in report
    assert "no shared width" not in report  # maw's 80 is one of random's widths
    rows = pd.read_csv(tmp_path / "versus_random.csv")
    assert len(rows) == 3 and set(rows["method"]) == {"maw"}  # maw: piqa and lambada at 80, piqa at 60


def test_seeds_are_pooled_into_one_point_per_width(frame):
    from analysis.controls import pool_replicates

    pooled = pool_replicates(frame)
    at80 = pooled[(pooled["method"] == "random") & (pooled["width"] == 80) & (pooled["benchmark"] == "piqa")]
    assert len(at80) == 1 and at80["replicates"].item() == 2
    assert at80["score"].item() == pytest.approx(0.52)
    assert at80["stderr"].item() == pytest.approx(math.sqrt(2 * 0.01 ** 2) / 2)
    assert len(pooled) == len(frame) - 3  # the second seed's three rows folded in
    assert (pooled.drop(columns="replicates").columns == frame.columns).all()


def test_seeds_item_scores_are_pooled_item_by_item(frame):
    from analysis.controls import pool_replicates

    random80 = (frame["method"] == "random") & (frame["width"] == 80) & (frame["benchmark"] == "piqa")
    first, second = frame.index[random80]
    frame["items"] = None
    frame.at[first, "items"] = {"piqa/0": 1.0, "piqa/1": 0.0, "piqa/2": 1.0}
    frame.at[second, "items"] = {"piqa/0": 0.0, "piqa/1": 0.0}  # scored on fewer items: their shared two pool
    at80 = pool_replicates(frame)
    assert at80.loc[(at80["method"] == "random") & (at80["width"] == 80) & (at80["benchmark"] == "piqa"),
                    "items"].item() == {"piqa/0": 0.5, "piqa/1": 0.0}
    frame.at[second, "items"] = None  # a replicate without its items: the pooled point has none either
    pooled = pool_replicates(frame)
    assert pooled.loc[(pooled["method"] == "random") & (pooled["width"] == 80) & (pooled["benchmark"] == "piqa"),
                      "items"].isna().all()


def test_advantages_carry_their_stderr_paired_over_items_where_kept(frame):
    t = versus_random(frame).set_index(["method", "width", "benchmark"])
    piqa = t.loc[("maw", 80, "piqa")]
    # No items: independent stderrs, random's two seeds averaged (sqrt(2 x 0.01^2) / 2), and the two
    # seeds' spread (0.50 and 0.54: stderr of their mean 0.02) in quadrature: random is itself a draw
    assert piqa["se_same_width"] == pytest.approx(math.sqrt(0.01**2 + 0.01**2 / 2 + 0.02**2))
    assert piqa["se_same_ppl"] == pytest.approx(math.sqrt(2) * 0.01)  # maw's ppl 10 is random's width-90 point
    assert piqa["paired_same_width"] == 0

    # The same items for every piqa run: maw and random differ on 4 of 100, random better on 3 of them
    base = [1.0] * 50 + [0.0] * 50
    def scored(flips):
        return {f"piqa/{i}": (1.0 - v if i in flips else v) for i, v in enumerate(base)}
    items = {("maw", 80): scored({0, 1, 2, 60}), ("random", 80): scored(set()), ("random", 90): scored(set())}
    frame["items"] = [items.get((m, w)) if b == "piqa" else None
                      for m, w, b in zip(frame["method"], frame["width"], frame["benchmark"])]
    frame["score"] = [float(np.mean(list(i.values()))) if isinstance(i, dict) else s for i, s in zip(frame["items"], frame["score"])]
    frame = frame[~((frame["method"] == "random") & (frame["width"] == 80) & (frame["score"] == 0.54))]  # one seed
    t = versus_random(frame).set_index(["method", "width", "benchmark"])
    piqa = t.loc[("maw", 80, "piqa")]
    diffs = np.array([-1.0] * 3 + [1.0] + [0.0] * 96)
    assert piqa["advantage_same_width"] == pytest.approx(diffs.mean())
    assert piqa["se_same_width"] == pytest.approx(diffs.std(ddof=1) / 10)  # 0.02, not sqrt(2) x 0.05
    assert piqa["paired_same_width"] == 100 and piqa["paired_same_ppl"] == 100
    s = summary(t.reset_index()).set_index(["method", "benchmark"])
    # width 80's z is -1.0; width 60's +0.05 over its unpaired sqrt(2) x 0.01 is stronger
    assert diffs.mean() / (diffs.std(ddof=1) / 10) == pytest.approx(-1.0)
    assert s.loc[("maw", "piqa"), "strongest_z_same_width"] == pytest.approx(0.05 / (math.sqrt(2) * 0.01))


def test_the_report_compares_with_random_only_where_the_baseline_is_above_chance(frame, tmp_path):
    import pandas as pd

    from analysis.report import write_report

    at_chance = frame.assign(score=frame["score"].where(frame["benchmark"] != "piqa", 0.5))  # piqa: 0.5, chance 0.5
    write_report(at_chance, tmp_path, n_boot=20)
    assert set(pd.read_csv(tmp_path / "versus_random.csv")["benchmark"]) == {"lambada"}


def test_equal_perplexity_follows_each_seed_along_its_own_curve():
    """Two random seeds reach other perplexities at the same widths (10 and 15 at 90, 20 and 40 at
    80). MAW at perplexity 15 is compared with each seed's own score there, then their mean: seed 1
    interpolated in log ppl, seed 2 measured; not with a blend of the seeds' means at their mean
    perplexities. At 35 only seed 2 reaches: seed 1 is not extrapolated."""
    rows = _rows("baseline", 100, 8.0, 0.7)
    for seed, points in ((1, ((90, 10.0, 0.60), (80, 20.0, 0.50))), (2, ((90, 15.0, 0.62), (80, 40.0, 0.40)))):
        rows += [r | {"seed": seed} for width, ppl, acc in points for r in _rows("random", width, ppl, acc)]
    rows += _rows("maw", 85, 15.0, 0.58) + _rows("maw", 70, 35.0, 0.45)
    t = versus_random(tidy_frame(rows)).set_index(["width", "benchmark"])
    seed1 = 0.60 - 0.10 * math.log(15 / 10) / math.log(20 / 10)
    assert t.at[(85, "piqa"), "random_same_ppl"] == pytest.approx((seed1 + 0.62) / 2)
    pooled = 0.61 - 0.16 * math.log(15 / 12.5) / math.log(30 / 12.5)  # what the seeds' means would give
    assert abs(t.at[(85, "piqa"), "random_same_ppl"] - pooled) > 0.003
    assert t.at[(70, "piqa"), "random_same_ppl"] == pytest.approx(0.62 - 0.22 * math.log(35 / 15) / math.log(40 / 15))
    assert math.isnan(t.at[(85, "piqa"), "random_same_width"])  # no random run at 85
    # the two seeds read 0.54 and 0.62 at 15: their mean's stderr, 0.039, is in the advantage's; one seed has none
    assert t.at[(85, "piqa"), "se_same_ppl"] > abs(seed1 - 0.62) / 2 > 0.03 > t.at[(70, "piqa"), "se_same_ppl"]
    # Unnamed seeds (the same rows without the column): the seeds' means at each width, as before
    t = versus_random(tidy_frame([{k: v for k, v in r.items() if k != "seed"} for r in rows])).set_index(["width", "benchmark"])
    assert t.at[(85, "piqa"), "random_same_ppl"] == pytest.approx(pooled)


def test_the_report_compares_each_random_seed_along_its_own_curve(tmp_path):
    """write_report pools the seeds for its hierarchies, but its comparison with random must not:
    versus_random.csv holds the per-seed blend and says how many seeds reached each perplexity."""
    import pandas as pd

    from analysis.report import write_report

    rows = _rows("baseline", 100, 8.0, 0.7)
    for seed, points in ((1, ((90, 10.0, 0.60), (80, 20.0, 0.50))), (2, ((90, 15.0, 0.62), (80, 40.0, 0.40)))):
        rows += [r | {"seed": seed} for width, ppl, acc in points for r in _rows("random", width, ppl, acc)]
    rows += _rows("maw", 85, 15.0, 0.58) + _rows("maw", 70, 35.0, 0.45)
    text = write_report(tidy_frame(rows), tmp_path, n_boot=20).read_text()
    assert "## Against random pruning: no shared width" in text  # maw's 85 and 70 are no random width
    t = pd.read_csv(tmp_path / "versus_random.csv").set_index(["width", "benchmark"])
    seed1 = 0.60 - 0.10 * math.log(15 / 10) / math.log(20 / 10)
    assert t.at[(85, "piqa"), "random_same_ppl"] == pytest.approx((seed1 + 0.62) / 2)
    assert t.at[(85, "piqa"), "seeds_same_ppl"] == 2 and t.at[(70, "piqa"), "seeds_same_ppl"] == 1
