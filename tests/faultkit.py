"""Shared helpers for the fault-injection tests: a tiny trained model, offline env, MLflow checks,
process-group kills that never touch a process the test did not start, and the one way a test
injects a fault into a trial.

Injecting a fault: ``with planned_faults(plan, (cfg, "nan")):`` names a trial (by its key) and a fault in ``FAULTS``.
The session's Ray cluster (conftest.ray_cluster) starts every worker with ``install`` as its
``worker_process_setup_hook``; ``install`` wraps ``glu_ray.sweep.trial.evaluate_stages`` so a
planned trial meets its fault on its pruned model just before stage 0. Nothing in the product
knows about faults.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# No HOME here: each command gets a fresh, empty one (offline_env), as on a new user's machine,
# so nothing the Makefile or a developer's HOME holds (Ray's bootstrap file) makes a test pass.
# Ray's token authentication stays on, as it is in a user's shell.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
}


def offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    return {**env, **OFFLINE_ENV, "HOME": tempfile.mkdtemp(prefix="glu-ray-home-"), **extra}


def tiny_model(base: Path) -> tuple[Path, Path]:
    """(a trained tiny Llama, its held-out perplexity text); built once per pytest session."""
    from glu_ray.models.tiny import build_tiny_model, tiny_eval_text

    root = base / "faultkit"
    return build_tiny_model(root / "tiny-f", seed=0, steps=50), tiny_eval_text(root)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str, step: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def kill_tree(proc, sig=signal.SIGKILL) -> None:
    """Kill a Popen started with start_new_session=True: its group, then any descendant that left it."""
    import psutil

    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    for k in kids:
        try:
            k.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    try:
        proc.wait(timeout=30)
    except Exception:  # noqa: BLE001
        pass
    psutil.wait_procs(kids, timeout=30)


def ended(ledger_path: Path) -> Counter:
    from glu_ray.trials.ledger import Ledger

    return Counter(e.key for e in Ledger(ledger_path).events() if e.kind == "end")


def trial_runs(uri: str, experiment: str) -> list:
    """Active (non-deleted) child runs of a sweep's experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id], "tags.`glu_ray.role` = 'trial'", max_results=1000)]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def assert_mlflow_matches_ledger(uri: str, experiment: str, ledger_path: Path, keys) -> None:
    """Exactly one active child run per trial key; its status, metric values and per-metric counts
    (one point per stage that reported it) are those of the ledger's latest attempt."""
    from mlflow.tracking import MlflowClient

    from glu_ray.trials.ledger import Ledger
    from glu_ray.tracking.runs import latest_attempt, metrics_of

    client = MlflowClient(uri)
    runs = trial_runs(uri, experiment)
    by_key = Counter(r.data.tags.get("glu_ray.trial_key") for r in runs)
    assert by_key == Counter(set(keys)), f"child runs per trial: {by_key}"
    ledger = Ledger(ledger_path)
    events = ledger.events()
    ends = {e.key: e for e in events if e.kind == "end"}
    for run in runs:
        key = run.data.tags["glu_ray.trial_key"]
        assert run.data.tags["glu_ray.status"] == ends[key].status, key
        assert run.info.status == ("FAILED" if ends[key].status == "failed" else "FINISHED"), (key, run.info.status)
        stages = latest_attempt(events, key)
        expected: dict[str, list[float]] = {}
        for e in stages:
            for k, v in metrics_of(e.data).items():  # the callback kept only the trial's own metrics
                expected.setdefault(k, []).append(v)
        assert set(run.data.metrics) == set(expected), (key, set(run.data.metrics) ^ set(expected))
        for k, values in expected.items():
            history = client.get_metric_history(run.info.run_id, k)
            assert len(history) == len(values), (key, k, len(history), len(values))
            assert _same(run.data.metrics[k], values[-1]), (key, k)


# ---------------------------------------------------------------- faults, injected inside Ray workers

def _scale_down(cfg, model, arg):
    # A real catastrophe: every MLP writes loud noise into the residual stream. (Scaling the
    # weights up is not enough: RMSNorm undoes most of it.)
    import torch

    from glu_ray.models.loading import glu_layers

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in glu_layers(model):
            w = t.down.weight
            w.copy_(torch.randn(w.shape, generator=gen).to(w) * 10)
    return cfg


def _nan_weights(cfg, model, arg):
    import torch

    from glu_ray.models.loading import glu_layers

    with torch.no_grad():
        glu_layers(model)[0].down.weight[0, 0] = float("nan")
    return cfg


def _raise(cfg, model, arg):
    raise RuntimeError("injected fault: trial raised")


def _oom(cfg, model, record):
    # Out of memory at any evaluation batch above 1: the trial survives only through the
    # half-the-batch retry (trial._with_oom_retry), which this fault exists to exercise.
    # ``record`` (a file path, optional): each forward's batch size and outcome, one line each,
    # "oom B" or "ok B", so the test sees that the fault fired and which batches were retried.
    import torch

    forward = model.forward

    def note(line: str) -> None:
        if record:
            with open(record, "a") as f:
                f.write(line + "\n")

    def tight_memory(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[0] > 1:
            note(f"oom {ids.shape[0]}")
            raise torch.OutOfMemoryError(f"injected fault: CUDA out of memory at batch {ids.shape[0]}")
        note(f"ok {ids.shape[0] if ids is not None else '?'}")
        return forward(*args, **kwargs)

    model.forward = tight_memory
    return cfg


def _task_error(cfg, model, tasks_dir):
    # The trial evaluates a task whose data file is gone (tasks_dir: see test_faults.broken_task_dir).
    return replace(cfg, eval=replace(cfg.eval, tasks=("broken_mc",), tasks_dir=tasks_dir))


# fault name -> fn(trial config, pruned model, argument) -> the config the trial evaluates with
def _slow_teardown(cfg, model, seconds):
    # Nothing changes before stage 0; the trial's thread takes ``seconds`` more to end once its
    # stages are left (install's wrapper sleeps as the trial lets go of them): past Tune's 2 s
    # grace for a finished trial's thread, the next trial Tune gives the same actor used to abort.
    return cfg


FAULTS = {"catastrophic": _scale_down, "nan": _nan_weights, "raise": _raise, "oom": _oom, "task_error": _task_error,
          "slow_teardown": _slow_teardown}

def plan_file(base: Path) -> Path:
    """Where this session's fault plan lives (trial key -> [fault, argument]); one per session."""
    return base / "fault-plan.json"


@contextmanager
def planned_faults(plan: Path, *faults: tuple):
    """Plan ``(trial config, fault[, argument])`` entries for the ``with`` block only: the plan is
    keyed by trial key, and another test's sweep over the same tiny model has the same keys."""
    entries = {}
    for cfg, fault, *arg in faults:
        if fault not in FAULTS:
            raise KeyError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        entries[cfg.key] = [fault, arg[0] if arg else None]
    _write_plan(plan, {**_read_plan(plan), **entries})
    try:
        yield
    finally:
        _write_plan(plan, {k: v for k, v in _read_plan(plan).items() if k not in entries})


def _read_plan(plan: Path) -> dict:
    import json

    return json.loads(plan.read_text()) if plan.is_file() else {}


def _write_plan(plan: Path, planned: dict) -> None:
    import json

    tmp = plan.with_suffix(".tmp")
    tmp.write_text(json.dumps(planned))
    tmp.replace(plan)


def setup_hook(plan: Path):
    """A Ray ``worker_process_setup_hook`` (a plain function: Ray names it by ``__name__``)."""
    def install_faults():
        install(plan)
    return install_faults


def install(plan: Path) -> None:
    """Wrap the trial's evaluate_stages in this process so planned trials meet their fault."""
    import json

    from glu_ray.sweep import trial

    real = getattr(trial.evaluate_stages, "__wrapped_by_faultkit__", trial.evaluate_stages)

    def evaluate_stages(cfg, model, tok, **kwargs):  # the trial's own keywords pass through (on_result, meter)
        planned = json.loads(plan.read_text()) if plan.is_file() else {}
        fault, arg = planned.get(cfg.key, (None, None))
        if fault:
            cfg = FAULTS[fault](cfg, model, arg)
        try:
            yield from real(cfg, model, tok, **kwargs)
        finally:  # the trial is done with its stages: returned, or stopped at a report
            if fault == "slow_teardown":
                time.sleep(float(arg))

    evaluate_stages.__wrapped_by_faultkit__ = real
    trial.evaluate_stages = evaluate_stages
