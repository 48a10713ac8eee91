"""The study's published tables load and reproduce the deltas its own readme reports."""

from __future__ import annotations

import re

import pytest

from conftest import SHARED

from analysis import analyse, delta_table, from_published
from glu_ray.cli.main import main

PUBLISHED = SHARED / "assets" / "published"
pytestmark = pytest.mark.skipif(not (PUBLISHED / "readme.md").is_file(), reason="../shared/assets/published absent")

# The readme's column headers -> benchmark names.
HEADERS = {"MMLU": "mmlu", "GSM8K": "gsm8k", "ARC-C": "arc_challenge", "HellaSwag": "hellaswag",
           "BoolQ": "boolq", "PIQA": "piqa", "WikiText PPL": "wikitext", "Lambada PPL": "lambada_openai",
           "IFEval": "ifeval", "MUSR": "leaderboard_musr", "TruthfulQA-MC1": "truthfulqa_mc1",
           "TruthfulQA-MC2": "truthfulqa_mc2", "WinoGrande": "winogrande"}


def _half_ulp(printed: str) -> float:
    """Half a unit of the last printed digit: '11.88' -> 0.005."""
    decimals = len(printed.partition(".")[2])
    return 0.5 * 10 ** -decimals


def readme_deltas() -> dict[tuple[str, float, str], tuple[float, float]]:
    """(model, ratio, benchmark) -> (% change printed in the readme, how far rounding lets it move).

    The study computed some deltas from rounded scores (3B WikiText at 2.4x: 11.88 / 9.26 -> +28.3%,
    where the 4-decimal table gives +28.2%), so the tolerance covers the printed scores' rounding."""
    text = (PUBLISHED / "readme.md").read_text()
    out, base = {}, {}
    for model, section in re.findall(r"## Quick Summary (Llama-3\.2-\dB)(.*?)(?=\n## |\Z)", text, re.S):
        for table in re.findall(r"(\| Expansion Ratio.*?)(?:\n\n|\Z)", section, re.S):
            lines = table.strip().splitlines()
            head = [c.strip() for c in lines[0].strip("|").split("|")]
            for line in lines[2:]:
                cells = [c.strip() for c in line.strip("|").split("|")]
                ratio = float(re.search(r"\*\*([\d.]+)x", cells[0]).group(1))
                for name, cell in zip(head[1:], cells[1:]):
                    printed, pct = cell.split()[0], re.search(r"\(\**([+-][\d.]+)%", cell)
                    if not pct:
                        base[name] = printed
                        continue
                    ratio_now = float(printed) / float(base[name])
                    slack = 100 * ratio_now * (_half_ulp(printed) / float(printed) + _half_ulp(base[name]) / float(base[name]))
                    out[(model, ratio, HEADERS[name])] = (float(pct.group(1)), 0.05 + slack)
    return out


@pytest.fixture(scope="module")
def analysis():
    return analyse(from_published(PUBLISHED), n_boot=200)


def test_every_published_delta_is_reproduced_to_its_rounding(analysis):
    expected = readme_deltas()
    assert len(expected) == 2 * 6 * 13  # both models, six pruned ratios, 13 benchmarks
    ret = analysis.retention.set_index(["model", "ratio", "benchmark"])
    for key, (pct, tolerance) in expected.items():
        ours = 100 * ret.loc[key, "rel_change"]
        assert abs(ours - pct) <= tolerance, (key, ours, pct, tolerance)


def test_headline_deltas_and_delta_table_cells(analysis):
    table = delta_table(analysis.retention).set_index(["model", "ratio"])
    row = table.loc[("Llama-3.2-1B", 2.4)]
    assert row["mmlu"] == "0.2689 (-13.6%)"
    assert row["gsm8k"] == "0.0205 (-68.9%)"
    assert row["wikitext"] == "56.33 (+386.9%)"
    assert table.loc[("Llama-3.2-3B", 2.4), "boolq"] == "0.5046 (-30.8%)"


def test_models_align_on_expansion_ratio_not_pruning_pct(analysis):
    at = analysis.retention[(analysis.retention["ratio"] == 2.4) & (analysis.retention["benchmark"] == "mmlu")]
    assert dict(zip(at["model"], at["pruning_pct"])) == {"Llama-3.2-1B": 40.0, "Llama-3.2-3B": 10.0}


def test_verdicts_follow_the_data(analysis):
    v = analysis.hypotheses.set_index("id")["verdict"]
    assert v[1] == "supported"  # MMLU loses most of its headroom in both models
    assert v[2] == "not supported"  # LAMBADA perplexity explodes (+1471.8% at 2.4x on 1B)
    assert v[4] == "mixed"  # BoolQ dips and recovers on 3B, not on 1B
    shapes = analysis.shapes.set_index(["model", "benchmark"])["shape"]
    assert shapes[("Llama-3.2-3B", "boolq")] == "non-monotonic"
    assert shapes[("Llama-3.2-1B", "boolq")] == "monotone"


def test_cli_writes_report_with_figures(tmp_path):
    assert main(["report", "--published", str(PUBLISHED), "--out", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "0.2689 (-13.6%)" in md and "![Retention heatmap](retention_heatmap.png)" in md
    assert (tmp_path / "retention_heatmap.png").stat().st_size > 10_000
    assert "<img src='retention_curves.png'" in (tmp_path / "report.html").read_text()


def test_stop_audit_on_the_study_no_run_is_dead_and_3x_would_have_stopped_seven():
    """The study's own numbers: every MAW run up to 27.9x its baseline WikiText perplexity keeps some
    benchmark above chance, so the old `ppl > 3 x baseline` rule stopped informative runs."""
    from analysis.stop_audit import audit_points, audit_summary, would_stop

    points = audit_points(from_published(PUBLISHED))
    assert len(points) == 12 and not points["dead"].any()
    pooled = audit_summary(points).set_index("model").loc["all models"]
    assert pooled["alive_max"] == pytest.approx(322.95 / 11.57, rel=1e-3)  # 1B at 60%: 27.9x
    assert pooled["recommended"] != pooled["recommended"]  # NaN: no threshold supported by this data
    wrong = would_stop(points, "baseline", 3.0)
    assert len(wrong) == 7 and wrong["wrongly"].all()
