"""Published tables of the shapes the study's later notebooks wrote, built here: null, percent and
wrong expansion_rate, the method called PPM, partial grids, fewer tasks, a CSV sibling.

The ratio must come from the pruning percentage and the model's config snapshot
(glu_ray/models/configs/), the stated value only cross-checked, each correction a note naming
file, model, run and field; and the hierarchy must be the one the true ratios give."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis import analyse, read_published
from analysis.tidy import COLUMNS
from glu_ray.cli.main import main
from glu_ray.errors import GluRayError

PCTS_1B = (0, 10, 20, 40, 60)  # Llama-3.2-1B: 8192/2048, native 4.0x
# benchmark -> scores at PCTS_1B. hellaswag barely moves at 10% then collapses; piqa loses more at
# 10% then holds: over the whole curve hellaswag is the more fragile, at the first step piqa is.
SCORES_1B = {
    "mmlu": (0.60, 0.40, 0.32, 0.27, 0.26),
    "hellaswag": (0.70, 0.69, 0.55, 0.35, 0.27),
    "piqa": (0.80, 0.72, 0.71, 0.705, 0.70),
    "gsm8k": (0.30, 0.20, 0.10, 0.05, 0.02),
}
PCTS_3B = (0, 10, 40, 60)  # Llama-3.2-3B: 8192/3072, native 2.67x; a partial grid, two tasks
SCORES_3B = {"mmlu": (0.56, 0.45, 0.30, 0.26), "piqa": (0.77, 0.76, 0.70, 0.65)}


def _cells(task: str, score: float) -> dict:
    if task == "gsm8k":  # lm-eval keys with their own stderr (the study reports flexible-extract): kept
        return {"exact_match,strict-match": score, "exact_match,flexible-extract": score,
                "exact_match_stderr,flexible-extract": 0.01}
    return {"accuracy": score, "acc_norm": score}  # mmlu is scored on acc, hellaswag and piqa on acc_norm


def _write(folder, stem: str, family: str, method: str, pcts, scores, rates, repo: str | None = None) -> None:
    runs = {}
    for i, (pct, rate) in enumerate(zip(pcts, rates)):
        run_id = "baseline" if pct == 0 else f"pruned_{pct}pct"
        runs[run_id] = {"name": family if pct == 0 else f"{family}-pruned-{pct}%", "pruning_pct": pct,
                        "expansion_rate": rate, "is_star": False,
                        "results": {task: _cells(task, s[i]) for task, s in scores.items()}}
        if pct == 0 and repo:
            runs[run_id]["hf_repo"] = repo
    doc = {"experiment_metadata": {"model_family": family, "pruning_method": method}, "models_evaluated": runs}
    (folder / f"{stem}_complete_results_latest.json").write_text(json.dumps(doc))


@pytest.fixture
def published(tmp_path):
    # 1B: the baseline says 300 (a percentage, and wrong: 4.0x is 400), every pruned run null.
    _write(tmp_path, "llama_1b", "Llama-3.2-1B", "PPM (Peak-to-Peak Magnitude)", PCTS_1B, SCORES_1B,
           (300, None, None, None, None), repo="meta-llama/Llama-3.2-1B")
    # 3B: percent units (240.0 for 2.4x), one plain wrong value at 40% (3.0x), fewer levels and tasks.
    _write(tmp_path, "llama_3b", "Llama-3.2-3B", "MAW (Maximum Absolute Weight)", PCTS_3B, SCORES_3B,
           (266.67, 240.0, 3.0, 107.0))
    return tmp_path


def test_ratios_come_from_pruning_pct_and_the_config_snapshot(published):
    df = read_published(published).frame
    runs = df.drop_duplicates(["model", "pruning_pct"]).set_index(["model", "pruning_pct"])
    for pct in PCTS_1B:
        kept = 8192 - int(pct / 100 * 8192)
        assert runs.loc[("Llama-3.2-1B", pct), "width"] == kept
        assert runs.loc[("Llama-3.2-1B", pct), "expansion_ratio"] == pytest.approx(kept / 2048)
    for pct in PCTS_3B:
        kept = 8192 - int(pct / 100 * 8192)
        assert runs.loc[("Llama-3.2-3B", pct), "expansion_ratio"] == pytest.approx(kept / 3072)
    assert set(df["method"]) == {"baseline", "maw"}  # PPM is MAW
    assert set(df.loc[df["model"] == "Llama-3.2-3B", "benchmark"]) == {"mmlu", "piqa"}


def test_every_correction_is_a_note_naming_file_model_run_field_and_value(published):
    notes = read_published(published).notes
    text = "\n".join(notes)
    assert ("llama_1b_complete_results_latest.json: Llama-3.2-1B run 'baseline': expansion_rate 300 is wrong "
            "(neither 4x nor 400%); using 4 (8192/2048 from pruning_pct 0 and meta-llama/Llama-3.2-1B's config") in text
    for pct, ratio in ((10, "3.6"), (20, "3.2"), (40, "2.4"), (60, "1.6")):
        assert (f"llama_1b_complete_results_latest.json: Llama-3.2-1B run 'pruned_{pct}pct': expansion_rate missing; "
                f"using {ratio}") in text
    assert "llama_1b_complete_results_latest.json: pruning_method 'PPM (Peak-to-Peak Magnitude)' is 'maw'" in text
    assert "Llama-3.2-3B run 'pruned_10pct': expansion_rate 240 is a percentage; using 2.4" in text
    assert "Llama-3.2-3B run 'pruned_40pct': expansion_rate 3 is wrong (neither 1.6x nor 160%); using 1.6" in text
    assert "Llama-3.2-3B run 'baseline': expansion_rate 266.67 is a percentage; using 2.667" in text
    assert len(notes) == 1 + 4 + 1 + 3 + 1  # 1B: baseline, 4 nulls, method; 3B: three percents, one wrong


def _truth() -> pd.DataFrame:
    """The same scores with the true ratios, straight into the tidy table."""
    rows = []
    chance = {"mmlu": 0.25, "hellaswag": 0.25, "piqa": 0.5, "gsm8k": 0.0}
    for model, pcts, scores, native in (("Llama-3.2-1B", PCTS_1B, SCORES_1B, (8192, 2048)),
                                        ("Llama-3.2-3B", PCTS_3B, SCORES_3B, (8192, 3072))):
        for task, values in scores.items():
            for pct, score in zip(pcts, values):
                kept = native[0] - int(pct / 100 * native[0])
                rows.append(dict(model=model, size=model[-2:], variant="base", method="baseline" if pct == 0 else "maw",
                                 expansion_ratio=kept / native[1], pruning_pct=float(pct), width=float(kept),
                                 benchmark=task, capability="x", score=score, stderr=math.nan, direction="higher",
                                 chance=chance[task], status="completed", score_name="acc"))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _order(frame: pd.DataFrame, model: str) -> list[str]:
    hier = analyse(frame, n_boot=50).hierarchy
    return hier[hier["model"] == model]["benchmark"].tolist()


def test_hierarchy_is_the_true_ratios_one_and_the_stated_300_would_change_it(published):
    df = read_published(published).frame
    truth = _truth()
    assert _order(df, "Llama-3.2-1B") == _order(truth, "Llama-3.2-1B")
    assert _order(df, "Llama-3.2-1B").index("hellaswag") < _order(df, "Llama-3.2-1B").index("piqa")
    assert _order(df, "Llama-3.2-3B") == _order(truth, "Llama-3.2-3B") == ["mmlu", "piqa"]
    trusted = truth.copy()
    trusted.loc[(trusted["model"] == "Llama-3.2-1B") & (trusted["pruning_pct"] == 0), "expansion_ratio"] = 300.0
    assert _order(trusted, "Llama-3.2-1B") != _order(truth, "Llama-3.2-1B")  # what trusting the file did


def test_missing_stderrs_of_accuracies_are_binomial_and_marked(published):
    df = read_published(published).frame
    mmlu = df[(df["benchmark"] == "mmlu") & (df["model"] == "Llama-3.2-1B")]
    for score, stderr, source in zip(mmlu["score"], mmlu["stderr"], mmlu["stderr_source"]):
        assert stderr == pytest.approx(math.sqrt(score * (1 - score) / 14042)) and source == "binomial (n=14042)"
    gsm = df[df["benchmark"] == "gsm8k"]
    assert (gsm["stderr"] == 0.01).all() and set(gsm["stderr_source"]) == {"reported"}


def test_csv_sibling_values_win_and_a_model_without_config_uses_its_stated_baseline(tmp_path):
    _write(tmp_path, "other", "Other-7B", "MAW", (0, 25, 50), {"mmlu": (0.5, 0.4, 0.3)}, (350.0, 2.625, None))
    csv = "model,pruning_pct,is_star,task,accuracy\nOther-7B,0,False,mmlu,0.55\nOther-7B-pruned-25%,25,False,mmlu,0.45\n"
    (tmp_path / "other_results_latest.csv").write_text(csv)
    pub = read_published(tmp_path)
    runs = pub.frame.set_index("pruning_pct")
    assert runs.loc[0.0, "score"] == 0.55 and runs.loc[25.0, "score"] == 0.45  # from the CSV
    assert runs.loc[50.0, "score"] == 0.3  # not in the CSV: the JSON's own
    assert runs["expansion_ratio"].tolist() == pytest.approx([3.5, 2.625, 1.75])
    assert any("Other-7B: no config found" in n and "native ratio 3.5x" in n for n in pub.notes)
    assert any("run 'pruned_50pct': expansion_rate missing; using 1.75" in n for n in pub.notes)


def test_unusable_files_are_one_line_errors_naming_the_file(tmp_path):
    (tmp_path / "a_complete_results_x.json").write_text("{not json")
    with pytest.raises(GluRayError, match="a_complete_results_x.json is not valid JSON"):
        read_published(tmp_path)
    (tmp_path / "a_complete_results_x.json").write_text(json.dumps({"experiment_metadata": {}}))
    with pytest.raises(GluRayError, match="a_complete_results_x.json: no runs in `models_evaluated`"):
        read_published(tmp_path)
    (tmp_path / "a_complete_results_x.json").unlink()
    _write(tmp_path, "nocfg", "Mystery-1B", "MAW", (0, 50), {"mmlu": (0.5, 0.3)}, (None, None))
    with pytest.raises(GluRayError, match="cannot place Mystery-1B on the expansion-ratio axis"):
        read_published(tmp_path)


def test_cli_report_prints_the_notes_and_writes_them_into_the_report(published, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--published", str(published), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("glu-ray report: warning: ") == 10 and "internal error" not in err
    md = (out / "report.md").read_text()
    assert "## Input notes" in md and "expansion_rate 300 is wrong" in md
    assert "| mmlu | binomial (n=14042) |" in md
    hier = pd.read_csv(out / "hierarchy.csv")
    assert set(hier["model"]) == {"Llama-3.2-1B", "Llama-3.2-3B"}
