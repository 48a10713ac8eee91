"""The sweep's terminal output: one compact line per trial event (model, metric, ratio, stage,
status, stage-0 perplexity) instead of Ray Tune's per-trial configuration boxes."""

from __future__ import annotations

import math

import pytest

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
    why = progress_line(_cfg("vow", 64), None, TrialStatus.FAILED, None, None, 4, 20, "cannot reach the hub")
    assert why == f"{failed}: cannot reach the hub"


@pytest.mark.slow
def test_a_running_trials_lines_reach_the_drivers_terminal(ray_cluster):
    import io

    import ray

    from glu_ray.sweep.progress import ProgressCallback
    from glu_ray.sweep.progress_log import trial_sink

    out = io.StringIO()
    callback = ProgressCallback(total=3, out=out)
    callback.setup()
    callback.drain(wait=30)
    out.truncate(0), out.seek(0)  # whatever an earlier sweep of this Ray session left there

    @ray.remote(num_cpus=0)
    def trial() -> bool:  # another process, as a Tune trial is
        emit = trial_sink("SmolLM2/maw/3.6x")
        if emit is None:
            return False
        sent = [emit("stage 0 perplexity: 4,096/9,211 tokens (44%), 120 tokens/s, ETA 43s"),
                emit("stage 0 perplexity: 8,192/9,211 tokens (89%), 121 tokens/s, ETA 8s")]
        ray.get(sent)  # delivered before the driver drains (a trial itself never waits)
        return True

    assert ray.get(trial.remote())
    callback.drain(wait=30)
    assert out.getvalue().splitlines() == [
        "[0/3] SmolLM2/maw/3.6x stage 0 perplexity: 4,096/9,211 tokens (44%), 120 tokens/s, ETA 43s",
        "[0/3] SmolLM2/maw/3.6x stage 0 perplexity: 8,192/9,211 tokens (89%), 121 tokens/s, ETA 8s"]
    callback.drain(wait=30)
    assert len(out.getvalue().splitlines()) == 2  # drained once




def test_a_slow_machine_is_told_what_to_expect_from_the_baselines_stage0():
    from glu_ray.sweep.budget import Budget

    budget = Budget(minutes=10, stage0_seconds=45, machine="2-core AVX2-only CPU")
    assert budget.check(40) is None and budget.check(67) is None  # within 1.5x: the promise holds
    assert budget.check(180) == ("this machine ran the baseline's stage 0 in 180s, 4.0x the 45s of the 2-core "
                                 "AVX2-only CPU this run is sized for (busy, or slower): expect about 40 minutes, "
                                 "not ~10")


def test_the_sweeps_terminal_says_so_once_the_baselines_stage0_is_in():
    import io
    from types import SimpleNamespace

    from glu_ray.sweep.budget import Budget
    from glu_ray.sweep.progress import ProgressCallback
    from glu_ray.vocab import METRIC, PPL_SECONDS, PPL_WORD, STAGE, STATUS

    out = io.StringIO()
    callback = ProgressCallback(total=4, out=out, budget=Budget(minutes=10, stage0_seconds=45, machine="x"))
    baseline, pruned = _cfg(None, 256), _cfg("maw", 128)
    for cfg, seconds in ((pruned, 500.0), (baseline, 180.0)):  # only the baseline's stage 0 is the yardstick
        trial = SimpleNamespace(trial_id=cfg.key, config={"trial": cfg.to_dict()})
        callback.on_trial_result(0, [], trial, {STAGE: 0, STATUS: "running", PPL_WORD: 30.0, PPL_SECONDS: seconds,
                                                METRIC: cfg.method})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[2].endswith("expect about 40 minutes, not ~10")


def test_a_trials_generation_cap_reaches_lm_eval(monkeypatch, tiny_model_dir):
    from dataclasses import replace

    from glu_ray.models.loading import load_model
    from glu_ray.sweep import trial
    from glu_ray.trials.config import EvalSpec

    seen = []

    def fake_run_suite(model, tok, suite, **kw):
        seen.append(kw.get("gen_kwargs"))
        raise RuntimeError("enough")  # only the arguments matter here

    monkeypatch.setattr(trial, "run_suite", fake_run_suite)
    model, tok = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    cfg = replace(_cfg(None, 80), model=str(tiny_model_dir),
                  eval=EvalSpec(suite="tiny", tasks=("tiny_gsm8k",), max_gen_toks=7, ppl_text=None))
    docs = ["One day a fox found a key under the old oak tree. " * 5]
    monkeypatch.setattr(trial, "_documents", lambda source, max_docs: tuple(docs))
    stages = trial.evaluate_stages(cfg, model, tok)
    next(stages)  # stage 0
    with pytest.raises(RuntimeError, match="enough"):
        next(stages)
    assert seen == [{"max_gen_toks": 7}]
