"""The sweep's terminal output: one compact line per trial event (model, metric, ratio, stage,
status, stage-0 perplexity) instead of Ray Tune's per-trial configuration boxes."""

from __future__ import annotations

import math

from glu_ray.pruning.widths import Width
from glu_ray.trials.config import EvalSpec, TrialConfig
from glu_ray.sweep.progress import progress_line
from glu_ray.vocab import TrialStatus


def _cfg(metric, width):
    return TrialConfig(model="/m/tiny-a", model_name="tiny-a", metric=metric, width=Width(width, 256, 64),
                       num_params=1000, variant="base", eval=EvalSpec())


def test_a_pruned_trial_is_one_line_with_its_ratio_stage_status_and_perplexity():
    line = progress_line(_cfg("maw", 128), 0, TrialStatus.RUNNING, 12.345, 1.31, 3, 20)
    assert "\n" not in line
    assert line.startswith("[ 3/20] tiny-a")
    for part in ("maw", "2x", "stage 0", "running", "ppl 12.35", "(1.31x baseline)"):
        assert part in line, part


def test_a_baseline_and_a_stopped_trial():
    base = progress_line(_cfg(None, 256), 2, TrialStatus.COMPLETED, 9.5, 1.0, 1, 20)
    assert "baseline" in base and "native" in base and "completed" in base and "x baseline" not in base
    stopped = progress_line(_cfg("pon", 64), 0, TrialStatus.STOPPED, math.inf, math.inf, 2, 20)
    assert "stopped: catastrophic" in stopped and "ppl inf" in stopped and "x baseline" not in stopped
    failed = progress_line(_cfg("vow", 64), None, TrialStatus.FAILED, None, None, 4, 20)
    assert failed.endswith("failed") and "stage" not in failed
