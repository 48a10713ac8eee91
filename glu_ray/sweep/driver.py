"""Run a SweepGrid on Ray Tune: baselines first, then the pruned grid, resumable by rerun.

Phase 1 evaluates each model's unpruned baseline once; when the stop rule compares with the
random-pruning control (StopRule.reference "control"), the controls run next; the last phase runs
every other (model, metric, width) with the baseline's (and its control's) perplexity in its
config, so a trial can stop itself after stage 0. An interrupted phase (Ctrl-C) ends the sweep. The
ledger (see ledger.py) is the source of truth: a rerun of the same command skips every trial
that already finished, so nothing is rerun and nothing logged twice.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from glu_ray.sweep.config import EvalSpec, TrialConfig
from glu_ray.errors import GluRayError, first_line
from glu_ray.evaluation.perplexity import load_documents
from glu_ray.evaluation.preflight import check_hub_inputs, check_suite_inputs
from glu_ray.sweep.grid import SweepGrid, build_trials, gpu_fraction, gpu_memory
from glu_ray.sweep.ledger import Ledger
from glu_ray.sweep.local_ray import loopback_env
from glu_ray.sweep.lock import experiment_lock
from glu_ray.sweep.results import results_table, write_report
from glu_ray.sweep.trial import run_trial
from glu_ray.tracking.runs import Tracker, default_tracking_uri
from glu_ray.vocab import PPL_RATIO, PPL_WORD, safe

log = logging.getLogger("glu_ray")


@dataclass(frozen=True)
class SweepOptions:
    name: str = "glu-ray"
    storage: str = "runs"  # Ray results + ledger + default MLflow store; shared path on multi-node
    tracking_uri: str | None = None  # default: SQLite under storage
    address: str | None = None  # existing Ray cluster; RAY_ADDRESS works too
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpu_fraction: float | None = None  # override the per-model fraction
    gpu_memory_gb: float | None = None  # for the fraction; default: grid.gpu_memory (the driver's GPU, else 80)
    max_failures: int = 0  # Tune retries of a failing trial
    verbose: int = 1


@dataclass(frozen=True)
class SweepResult:
    trials: tuple[TrialConfig, ...]
    rows: dict[str, dict]  # trial key -> merged results + status
    finished: bool  # every trial completed, stopped or failed
    experiment_dir: Path
    tracking_uri: str


def run_sweep(grid: SweepGrid, opts: SweepOptions) -> SweepResult:
    check_hub_inputs(((m.source, m.revision) for m in grid.models),  # online: every repo, one pass
                     ((s, s.benchmarks) for s in {replace(grid.eval, suite=m.suite).load_suite() for m in grid.models}),
                     stage0=grid.eval.ppl_text in (None, "wikitext"))
    baselines, pruned = build_trials(grid)  # all input checks, before Ray starts
    check_eval_inputs(c.eval for c in baselines)
    root = experiment_dir(opts)
    with experiment_lock(root):  # one driver per experiment: a second one stops here, naming the first
        return _run_locked(baselines, pruned, grid, opts, root)


def check_eval_inputs(evals: Iterable[EvalSpec]) -> None:
    """What every trial will evaluate, readable here: its suite's tasks and data (offline: cached; see
    evaluation/preflight.py) and stage 0's text. Not in build_trials: --estimate prices a grid offline."""
    for ev in set(evals):
        check_suite_inputs(ev.load_suite())
        load_documents(ev.ppl_text)  # a file with no text; lm-eval's WikiText-2 pages offline and uncached


def experiment_dir(opts: SweepOptions) -> Path:
    return Path(opts.storage).resolve() / opts.name


def _run_locked(baselines, pruned, grid: SweepGrid, opts: SweepOptions, root: Path) -> SweepResult:
    ledger = Ledger(root / "ledger.jsonl")
    cache = str(root / "rankings")
    baselines, pruned = ([_with_artifact_dir(c, root) for c in group] for group in (baselines, pruned))
    tracker, uri = _tracker(opts, root)
    _init_ray(opts)
    tracker.start_sweep(opts.name, {"grid": repr(grid), "command": " ".join(sys.argv), **_provenance()})
    configs = {c.key: c for c in baselines + pruned}
    tracker.set_runs_view(headline_keys(baselines + pruned))
    tracker.sync(ledger, configs)  # a previous attempt's results that never reached MLflow

    whole = _run_phase("baselines", baselines, ledger, tracker, opts, root)
    done = ledger.results()  # read once: the ledger is a file
    ppl = {c.model: done.get(c.key, {}).get(PPL_WORD) for c in baselines}
    pruned = [replace(c, baseline_ppl=_finite(ppl.get(c.model)), ranking_cache=cache) for c in pruned]
    controls = [c for c in pruned if grid.stop.needs_control(grid.metrics) and c.metric == grid.stop.control_metric]
    rest = [c for c in pruned if c not in controls]
    if controls and whole:
        configs.update({c.key: c for c in controls})
        whole = _run_phase("controls", controls, ledger, tracker, opts, root)
        done = ledger.results()
        ctrl = {(c.model, c.width.width): _finite(done.get(c.key, {}).get(PPL_WORD)) for c in controls}
        rest = [replace(c, control_ppl=ctrl.get((c.model, c.width.width))) for c in rest]
    pruned = controls + rest
    configs.update({c.key: c for c in pruned})
    if whole:
        _run_phase("grid", rest, ledger, tracker, opts, root)

    rows = ledger.results()
    trials = tuple(baselines + pruned)
    ended = {e.key for e in ledger.events() if e.kind == "end"}
    finished = all(c.key in ended for c in trials)
    try:
        tracker.sync(ledger, configs)
        tracker.publish(results_table(trials, rows), write_report(trials, rows, root / "report"))  # never raises
        tracker.end_sweep(finished)
    except Exception as err:  # noqa: BLE001 - the ledger holds every result; a rerun syncs them
        log.warning("MLflow at %s unreachable at the end of the sweep (%s): every result is kept in %s; "
                    "rerun the same command when it is back to log them", uri, first_line(err), ledger.path)
    return SweepResult(trials, rows, finished, root, uri)


def headline_keys(trials) -> list[str]:
    """What a researcher compares trials on: stage-0 perplexity, then each suite's headline scores."""
    keys = [PPL_WORD, PPL_RATIO]
    for cfg in trials:
        keys += [b.key for b in cfg.eval.load_suite().benchmarks if b.key not in keys]
    return keys


def _run_phase(phase, trials, ledger, tracker, opts, root) -> bool:
    """Run the phase's unfinished trials; False when it was cut short (Ctrl-C: Tune returns
    from fit with trials that never ended), so the next phase does not start."""
    # Ray Tune and the callbacks (which subclass Tune's) are imported where a sweep runs: Tune
    # costs ~5 s at import (python -X importtime), which --estimate and --help never need.
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from glu_ray.sweep.progress import ProgressCallback
    from glu_ray.tracking.callback import TrackingCallback

    done = ledger.finished()
    pending = [c for c in trials if c.key not in done]
    if not pending:
        return True
    gpu_mem = gpu_memory(opts.gpu_memory_gb)
    trainable = tune.with_resources(run_trial, lambda config: _resources(config, opts, gpu_mem))
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([c.to_dict() for c in pending])},
        tune_config=tune.TuneConfig(max_concurrent_trials=opts.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{phase}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(root / "ray"),
            # Tune's per-trial CSV/JSON results stay; its TensorBoard logger only at verbose 2
            # (MLflow is the tracker, and that logger warns once per trial about tuple params).
            callbacks=[TrackingCallback(ledger, tracker), CSVLoggerCallback(), JsonLoggerCallback()]
            + ([ProgressCallback(len(pending))] if opts.verbose else []),
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            # Tune's reporter (a configuration box per trial, a status table) only at verbose 2:
            # below it, ProgressCallback prints one line per trial event instead.
            verbose=1 if opts.verbose >= 2 else 0,
        ),
    )
    with _tune_env(quiet=opts.verbose < 2):
        tuner.fit()  # trial errors are recorded by the callback, never raised here
    ended = {e.key for e in ledger.events() if e.kind == "end"}
    return all(c.key in ended for c in pending)


@contextmanager
def _tune_env(quiet: bool) -> Iterator[None]:
    """Tune's environment switches for one fit. Quiet: Tune's new reporter prints an experiment
    box and a TensorBoard hint even at verbose 0; its legacy one at 0 prints nothing."""
    switches = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"} if quiet else {}
    saved = {k: os.environ.get(k) for k in switches}
    for k, v in switches.items():
        os.environ.setdefault(k, v)  # a user's own setting wins
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _resources(config: dict, opts: SweepOptions, gpu_mem: int) -> dict:
    import ray  # lazy: ~1 s at import, only where a sweep runs (see _run_phase)

    cfg = TrialConfig.from_dict(config["trial"])
    if ray.cluster_resources().get("GPU", 0) > 0:
        frac = opts.gpu_fraction or gpu_fraction(cfg.num_params, gpu_mem)
        return {"cpu": opts.cpus_per_trial, "gpu": frac}
    return {"cpu": opts.cpus_per_trial}


def _init_ray(opts: SweepOptions) -> None:
    address = opts.address or os.environ.get("RAY_ADDRESS")
    if not address:
        # A local cluster binds to loopback: nothing listens on, or probes, the network (Ray
        # otherwise discovers the node IP by "connecting" to a public DNS server).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray  # after the variable above: Ray reads it at import

    if ray.is_initialized():
        return
    # Trial stdout (lm-eval's progress bars and warnings) only at verbose >= 2: errors reach the
    # ledger and MLflow anyway, and Tune's own table says what runs.
    quiet = {"log_to_driver": opts.verbose >= 2}
    if address:
        ray.init(address=address, **quiet)
    else:
        # "local": always a fresh instance. Plain ray.init() would join (or, if it has died, wait
        # for) whatever cluster `ray start` last recorded in /tmp/ray: someone else's.
        with loopback_env(experiment_dir(opts)) as runtime_env:  # no cloud metadata probe (local_ray.py)
            ray.init(address="local", include_dashboard=False, runtime_env=runtime_env, **quiet)


def _tracker(opts: SweepOptions, root: Path):
    uri = opts.tracking_uri or default_tracking_uri(root)
    if uri.startswith(("http://", "https://")):
        # MLflow's client retries a dead server for minutes per call; during a sweep the ledger
        # keeps every result anyway, so fail a write quickly and sync it later.
        for var, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                           ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
            os.environ.setdefault(var, value)
        _check_reachable(uri)
    # Created here, in the driver, before any trial runs: parallel first use of SQLite races.
    try:
        return Tracker(uri, opts.name, artifact_root=str(root / "mlartifacts")), uri
    except Exception as err:  # noqa: BLE001 - fail before any trial spends GPU time
        raise GluRayError(f"cannot use MLflow tracking URI {uri}: {first_line(err)}") from None


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before Ray starts, when the tracking server does not answer."""
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise GluRayError(f"MLflow tracking server {uri} is unreachable ({err.strerror or err}); start it, "
                          "or drop --tracking-uri to track in SQLite under --storage") from None



def _with_artifact_dir(cfg: TrialConfig, root: Path) -> TrialConfig:
    """The trial's own folder for its MLflow files, under storage (shared on a cluster)."""
    # Readable, and unique: two models may share a short name.
    slug = safe(cfg.name).replace("/", "_") + "-" + hashlib.sha1(cfg.key.encode()).hexdigest()[:8]
    return replace(cfg, artifact_dir=str(root / "trials" / slug))


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _provenance() -> dict[str, str]:
    out = {"python": platform.python_version(), "host_cpus": str(os.cpu_count())}
    for pkg in ("torch", "transformers", "lm_eval", "ray", "mlflow"):
        try:
            out[f"version_{pkg}"] = md.version(pkg.replace("_", "-"))
        except md.PackageNotFoundError:
            pass
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                           timeout=5, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        out["git_commit"] = "unknown"
    return out
