"""Recovery analysis on a synthetic table with a known answer: what healing brings back, per
benchmark and capability, the least-recovered hierarchy, and both fragility hierarchies."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import write_report
from analysis.recovery import has_healing, recovered_shares, unhealed
from analysis.tidy import COLUMNS

RATIOS = (3.2, 2.4)
# benchmark -> (capability, chance, direction, baseline, pruned, healed) at each pruned ratio
TRUTH = {
    "mmlu": ("knowledge", 0.25, "higher", 0.60, (0.40, 0.30), (0.45, 0.32)),  # 25% / 6.7% back
    "arc": ("knowledge", 0.25, "higher", 0.50, (0.40, 0.30), (0.42, 0.31)),  # 20% / 5% back
    "hellaswag": ("commonsense", 0.25, "higher", 0.70, (0.50, 0.40), (0.66, 0.64)),  # 80% / 80% back
    "piqa": ("physical", 0.5, "higher", 0.80, (0.80, 0.799), (0.80, 0.80)),  # nothing was lost
    "wikitext": ("language modelling", math.nan, "lower", 10.0, (20.0, 40.0), (12.0, 20.0)),
}


def _rows(stderr: float = 0.002) -> list[dict]:
    rows = []
    for bench, (cap, chance, direction, base, pruned, healed) in TRUTH.items():
        points = [(4.0, "baseline", "none", base)]
        points += [(r, "maw", "none", s) for r, s in zip(RATIOS, pruned)]
        points += [(r, "maw", "kd", s) for r, s in zip(RATIOS, healed)]
        for ratio, method, healing, score in points:
            rows.append(dict(model="M", size="1B", variant="base", method=method, expansion_ratio=ratio,
                             pruning_pct=100 * (1 - ratio / 4), width=ratio * 64, benchmark=bench, capability=cap,
                             score=score, stderr=stderr, direction=direction, chance=chance, status="completed",
                             score_name="acc", stderr_source="reported", healing=healing))
    return rows


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.DataFrame(_rows(), columns=list(COLUMNS))


def test_recovered_share_is_the_gap_healing_closes(table):
    shares, draws = recovered_shares(table, n_boot=400)
    at = shares.set_index(["ratio", "benchmark"])
    assert at.loc[(3.2, "mmlu"), "recovered_share"] == pytest.approx(0.25)
    assert at.loc[(2.4, "hellaswag"), "recovered_share"] == pytest.approx(0.8)
    # Perplexity on the log scale: ln 40 -> ln 20 of the ln 40 -> ln 10 gap is half of it.
    assert at.loc[(2.4, "wikitext"), "recovered_share"] == pytest.approx(0.5)
    assert math.isnan(at.loc[(3.2, "piqa"), "recovered_share"])  # nothing lost, nothing to recover
    row = at.loc[(3.2, "mmlu")]
    assert row["lo"] < 0.25 < row["hi"] and row["hi"] - row["lo"] < 0.2
    assert row["retention_before"] == pytest.approx((0.40 - 0.25) / (0.60 - 0.25))
    assert row["retention_after"] == pytest.approx((0.45 - 0.25) / (0.60 - 0.25))
    assert len(draws[("M", "1B", "base", "maw", "kd", 3.2, "mmlu")]) == 400


def test_report_has_the_recovery_hierarchy_and_both_fragility_hierarchies(table, tmp_path):
    assert has_healing(table) and not has_healing(unhealed(table))
    md = write_report(table, tmp_path, n_boot=300).read_text()
    for heading in ("Recovered share by capability (least recovered first)",
                    "Recovered share by benchmark (least recovered first)",
                    "Fragility hierarchy by benchmark: before and after healing"):
        assert f"## {heading}" in md
    caps = pd.read_csv(tmp_path / "recovery_capabilities.csv")
    at24 = caps[caps["ratio"] == 2.4].sort_values("recovered_share")
    assert at24["capability"].tolist() == ["knowledge", "language modelling", "commonsense"]  # physical: no gap
    assert at24.iloc[0]["recovered_share"] == pytest.approx((0.02 / 0.30 + 0.01 / 0.20) / 2)
    side = pd.read_csv(tmp_path / "recovery_side_by_side.csv").set_index("benchmark")
    # Healing shrinks hellaswag's loss most: it moves down the fragility hierarchy.
    assert side.loc["hellaswag", "rank_after"] > side.loc["hellaswag", "rank_before"]
    assert (side["fragility_after"] <= side["fragility_before"] + 1e-9).all()
    # The fragility analysis of the pruned models is unchanged by the healed rows.
    plain = tmp_path / "plain"
    write_report(unhealed(table), plain, n_boot=300)
    pd.testing.assert_frame_equal(pd.read_csv(plain / "hierarchy.csv"), pd.read_csv(tmp_path / "hierarchy.csv"))
    assert not (plain / "recovery_shares.csv").exists()


def test_rows_without_a_healing_column_count_as_unhealed(table):
    legacy = table[table["healing"] == "none"].drop(columns="healing")
    assert not has_healing(legacy) and len(unhealed(legacy)) == len(legacy)
    assert np.isfinite(recovered_shares(table, n_boot=50)[0]["recovered_share"]).sum() == 8


def test_recovered_share_pairs_over_the_items_all_three_runs_kept():
    """200 items: the baseline gets 120 right, pruning loses 50 of them, healing wins back 25. The
    share is 0.5 either way; paired over the items, only the 50 lost ones vary (about 0.5 +- 0.07),
    while the three binomial stderrs drawn apart make the interval several times wider."""
    base = {f"q{i}": float(i < 120) for i in range(200)}
    before = {k: 0.0 if int(k[1:]) < 50 else v for k, v in base.items()}
    after = {k: 1.0 if int(k[1:]) < 25 else v for k, v in before.items()}
    rows = []
    for method, healing, items in (("baseline", "none", base), ("maw", "none", before), ("maw", "kd", after)):
        score = sum(items.values()) / len(items)
        rows.append(dict(model="M", size="1B", variant="base", method=method, expansion_ratio=4.0 if method == "baseline" else 3.2,
                         pruning_pct=0.0, width=64.0, benchmark="mmlu", capability="knowledge", score=score,
                         stderr=math.sqrt(score * (1 - score) / 200), direction="higher", chance=0.25,
                         status="completed", score_name="acc", stderr_source="reported", healing=healing, items=items))
    paired = recovered_shares(pd.DataFrame(rows, columns=list(COLUMNS)), n_boot=2000)[0].iloc[0]
    apart = recovered_shares(pd.DataFrame(rows, columns=list(COLUMNS)).assign(items=None), n_boot=2000)[0].iloc[0]
    assert paired["recovered_share"] == apart["recovered_share"] == pytest.approx(0.5)
    assert paired["paired_items"] == 200 and apart["paired_items"] == 0
    assert 0.2 < paired["hi"] - paired["lo"] < 0.35  # 2 * 1.96 * sqrt(0.25 / 50) = 0.28
    assert apart["hi"] - apart["lo"] > 2 * (paired["hi"] - paired["lo"])
