"""Faults injected for real into one experiment on a real local Ray, real lm-eval and a real MLflow store.

One model with a truncated safetensors file (its config validates; its weights do not load), and
on a good model: a trial that raises, one whose evaluation runs out of memory above batch 1, one
whose perplexity is NaN, one whose lm-eval task has lost its data file, and a clean one, with
``max_failures=1`` and two trials at a time. The in-trial faults go in through faultkit's worker
hook (the one way tests inject faults). The sweep must finish, record each fault on its trial,
retry by the policy, and leave MLflow equal to the ledger.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from faultkit import assert_mlflow_matches_ledger, planned_faults, tiny_model, trial_runs
from glu_ray.trials.stop_rule import StopRule
from glu_ray.trials.config import EvalSpec
from glu_ray.sweep.grid import ModelSpec, SweepGrid, build_trials
from glu_ray.trials.ledger import Ledger
from glu_ray.sweep.driver import SweepOptions, run_sweep
from glu_ray.pruning.widths import TargetWidth

pytestmark = [pytest.mark.faults, pytest.mark.slow]
PCTS = (10, 25, 40, 50, 60)
# pruning % -> the fault injected into that trial (faultkit.FAULTS; None: a clean trial)
PLAN = {10: None, 25: "raise", 40: "oom", 50: "nan", 60: "task_error"}
# fault -> its argument: the broken task folder; the file the OOM fault records each forward in
ARGS = {"task_error": lambda root, tasks: str(tasks), "oom": lambda root, tasks: str(root / "oom-record.txt")}


def broken_task_dir(root: Path) -> Path:
    """A valid lm-eval task folder whose data file is missing: it indexes and parses, then fails in lm-eval."""
    tiny = Path(__file__).resolve().parents[1] / "glu_ray" / "evaluation" / "tasks" / "tiny"
    out = root / "broken-tasks"
    out.mkdir(parents=True)
    shutil.copy(tiny / "utils.py", out / "utils.py")
    text = (tiny / "tiny_mc.yaml").read_text().replace("task: tiny_mc", "task: broken_mc")
    (out / "broken_mc.yaml").write_text(text.replace("tiny_mc.jsonl", "gone.jsonl"))
    return out


def corrupted_model(good: Path, root: Path) -> Path:
    out = root / "tiny-corrupt"
    shutil.copytree(good, out)
    weights = next(out.glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # a copy cut short: header intact, tensors missing
    return out


@pytest.fixture(scope="module")
def fault_sweep(tmp_path_factory, ray_cluster):
    good, text = tiny_model(tmp_path_factory.getbasetemp())
    root = tmp_path_factory.mktemp("faults")
    bad = corrupted_model(good, root)
    tasks = broken_task_dir(root)
    ev = EvalSpec(suite="tiny", tasks=("tiny_mc",), limit=4, batch_size=4, ppl_text=str(text))
    opts = SweepOptions(name="faults", storage=str(root), max_concurrent=2, max_failures=1, verbose=0)
    # The corrupted model's baseline is enough: its own grid has no widths (a baseline only),
    # run first into the same experiment; then the good model's grid, one fault per width.
    corrupt = run_sweep(SweepGrid((ModelSpec(str(bad), "tiny"),), ("maw",), (), ev, stop=StopRule(threshold=1e6)), opts)
    grid = SweepGrid((ModelSpec(str(good), "tiny"),), ("maw",), tuple(TargetWidth(pruning_pct=p) for p in PCTS), ev,
                     stop=StopRule(threshold=1e6))
    by_fault = {"corrupt": corrupt.trials[0]}
    baselines, pruned = build_trials(grid)
    by_fault["baseline"] = baselines[0]
    faults = []
    for c in pruned:
        fault = PLAN[min(PCTS, key=lambda p: abs(p - c.width.pruning_pct))]
        by_fault[fault or "clean"] = c
        if fault:
            faults.append((c, fault, ARGS.get(fault, lambda root, tasks: None)(root, tasks)))
    with planned_faults(ray_cluster, *faults):
        result = run_sweep(grid, opts)
    both = replace(result, trials=corrupt.trials + result.trials, finished=corrupt.finished and result.finished)
    return both, by_fault


def _status(result, cfg) -> str:
    return result.rows[cfg.key]["status"]


def _errors(result, cfg) -> list[str]:
    events = Ledger(result.experiment_dir / "ledger.jsonl").events()
    return [e.data.get("error", "") for e in events if e.key == cfg.key and e.kind == "end"]


def _run(result, cfg):
    (run,) = [r for r in trial_runs(result.tracking_uri, "faults") if r.data.tags["glu_ray.trial_key"] == cfg.key]
    return run


def test_sweep_finishes_and_the_clean_trials_complete(fault_sweep):
    result, t = fault_sweep
    assert result.finished and len(result.trials) == 7
    for name in ("baseline", "clean"):
        assert _status(result, t[name]) == "completed"
        assert "tiny_mc/acc_norm" in result.rows[t[name].key]


@pytest.mark.parametrize("fault, words", [("raise", "injected fault: trial raised"),
                                          ("corrupt", "safetensors"),
                                          ("task_error", "gone.jsonl")])
def test_failing_trial_recorded_failed_with_its_error_in_ledger_and_mlflow(fault_sweep, fault, words):
    result, t = fault_sweep
    cfg = t[fault]
    assert _status(result, cfg) == "failed"
    (error,) = _errors(result, cfg)  # one end: retries are not ends
    assert words.lower() in error.lower(), error
    run = _run(result, cfg)
    assert run.data.tags["glu_ray.status"] == "failed" and run.info.status == "FAILED"
    assert run.data.tags["glu_ray.error"] == error


def test_retries_follow_max_failures(fault_sweep):
    """The task-error trial reports stage 0 before lm-eval fails: one stage-0 result per attempt."""
    result, t = fault_sweep
    events = Ledger(result.experiment_dir / "ledger.jsonl").events()
    attempts = [e for e in events if e.key == t["task_error"].key and e.kind == "result" and e.stage == 0]
    assert len(attempts) == 1 + 1  # first try + max_failures=1 retry
    done = [e for e in events if e.key == t["clean"].key and e.kind == "result" and e.stage == 0]
    assert len(done) == 1  # a trial that succeeds is never retried


def test_out_of_memory_in_evaluation_retries_with_a_smaller_batch(fault_sweep):
    result, t = fault_sweep
    row = result.rows[t["oom"].key]
    assert row["status"] == "completed", _errors(result, t["oom"])
    assert math.isfinite(row["ppl/word_perplexity"]) and "tiny_mc/acc_norm" in row
    stage0 = [e for e in Ledger(result.experiment_dir / "ledger.jsonl").events()
              if e.key == t["oom"].key and e.kind == "result" and e.stage == 0]
    assert len(stage0) == 1  # recovered inside the trial, not by a Tune retry
    # The injected OOM fired, and each stage (perplexity, then lm-eval) retried at half the batch
    # until batch 1 ran: the forwards, runs of the same line collapsed.
    calls = (result.experiment_dir.parent / "oom-record.txt").read_text().splitlines()
    runs = [line for i, line in enumerate(calls) if i == 0 or line != calls[i - 1]]
    assert runs == ["oom 4", "oom 2", "ok 1"] * 2, runs


def test_nan_perplexity_is_catastrophic_and_analysis_survives_it(fault_sweep, tmp_path):
    from analysis import analyse, from_mlflow, write_report

    result, t = fault_sweep
    row = result.rows[t["nan"].key]
    assert row["status"] == "stopped: catastrophic" and math.isnan(row["ppl/word_perplexity"])
    run = _run(result, t["nan"])
    assert run.data.tags["glu_ray.status"] == "stopped: catastrophic"
    assert math.isnan(run.data.metrics["ppl/word_perplexity"])
    df = from_mlflow("faults", result.tracking_uri)
    assert "stopped: catastrophic" in set(df["status"])
    analyse(df)
    path = write_report(df, tmp_path / "report")
    assert path.is_file() and path.stat().st_size > 0
    # The task-error trial scored stage 0 before lm-eval failed: no point of any curve, but listed
    # (the trials that failed before any score have no row in the table to list)
    left = pd.read_csv(path.parent / "unfinished.csv")
    assert left[["method", "status", "scored"]].values.tolist() == [["maw", "failed", "ppl"]]
    assert t["task_error"].width.width in set(left["width"])
    assert "## Left out: runs that did not finish (table)" in path.read_text()


def test_parallel_trials_lose_no_metric(fault_sweep):
    """Two trials at a time through one driver-side callback: MLflow holds exactly the ledger."""
    result, _ = fault_sweep
    runs = trial_runs(result.tracking_uri, "faults")
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), f"no two trials overlapped: {spans}"
    assert_mlflow_matches_ledger(result.tracking_uri, "faults", result.experiment_dir / "ledger.jsonl",
                                 [c.key for c in result.trials])


def test_a_reference_slow_to_tear_down_does_not_abort_the_next_one_on_its_actor(tmp_path_factory, ray_cluster):
    """The references run one at a time and Tune hands each the previous one's actor
    (reuse_actors), giving the previous trial's thread 2 s to end. The first reference here takes
    4 s to let go of its stages (faultkit's slow_teardown): the second must still be measured, not
    aborted with Tune's "requires reset_config()", which left its model's trials unstarted. (A
    reference that Tune stopped after stage 0 was torn down inside that grace; one that ends itself
    is torn down before Tune moves on.)"""
    good, text = tiny_model(tmp_path_factory.getbasetemp())
    root = tmp_path_factory.mktemp("slow-teardown")
    other = root / "tiny-copy"
    shutil.copytree(good, other)  # a second model: a second reference, after the first on one actor
    ev = EvalSpec(suite="tiny", tasks=("tiny_mc",), limit=4, batch_size=4, ppl_text=str(text))
    grid = SweepGrid((ModelSpec(str(good), "tiny"), ModelSpec(str(other), "tiny")), ("maw",),
                     (TargetWidth(pruning_pct=50),), ev, stop=StopRule(threshold=1e6))
    baselines, _ = build_trials(grid)
    opts = SweepOptions(name="slow-teardown", storage=str(root), max_concurrent=1, max_failures=0, verbose=0)
    with planned_faults(ray_cluster, *((b, "slow_teardown", 4.0) for b in baselines)):
        result = run_sweep(grid, opts)
    events = Ledger(result.experiment_dir / "ledger.jsonl").events()
    assert {e.key for e in events if e.kind == "reference"} == {b.key for b in baselines}
    assert result.finished and {r["status"] for r in result.rows.values()} == {"completed"}

