"""Run a SweepGrid on Ray Tune: references' stage 0 first, then every trial at once, resumable by rerun.

No phase barrier (sweep/plan.py): a pruned trial needs only its reference's stage-0 perplexity
(its model's baseline; with StopRule.reference "control", also the random control's at its
width), so those are measured first, each alone and stopped after stage 0 (seconds per model);
then one Tune experiment runs the full baselines and the whole grid, longest expected trials
first, each pruned trial with its references' perplexity in its config so it can stop itself
after stage 0. An interrupted step (Ctrl-C) ends the sweep. The ledger (glu_ray/trials/ledger.py)
is the source of truth: a rerun of the same command skips every trial that already finished and
every reference already measured, so nothing is rerun and nothing logged twice.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from glu_ray.trials.config import EvalSpec, TrialConfig
from glu_ray.environment import env_defaults
from glu_ray.errors import GluRayError, first_line
from glu_ray.evaluation.perplexity import load_documents
from glu_ray.evaluation.preflight import check_hub_inputs, check_suite_inputs
from glu_ray.sweep.budget import Budget
from glu_ray.sweep.grid import SweepGrid, build_trials, gpu_fraction, gpu_memory
from glu_ray.trials.ledger import Ledger
from glu_ray.sweep.local_ray import loopback_env
from glu_ray.sweep.lock import experiment_lock
from glu_ray.sweep.cluster import check_storage_shared
from glu_ray.sweep.estimate import modelled_times, trial_costs
from glu_ray.sweep.pins import pin_models, record_pins
from glu_ray.sweep.plan import expected_seconds, longest_first, reference_trials, with_references
from glu_ray.sweep.results import results_table
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
    budget: Budget | None = None  # the preset's time promise, checked against the baseline's stage 0


@dataclass(frozen=True)
class SweepResult:
    trials: tuple[TrialConfig, ...]
    rows: dict[str, dict]  # trial key -> merged results + status
    finished: bool  # every trial completed, stopped or failed
    experiment_dir: Path
    tracking_uri: str
    experiment: str = ""  # the MLflow experiment (SweepOptions.name)
    held: int = 0  # pruned trials not started because their reference failed (a rerun runs them)
    plans: dict = field(default_factory=dict)  # --items-by-power: model -> its plan (items_by_power.json)


def run_sweep(grid: SweepGrid, opts: SweepOptions) -> SweepResult:
    check_hub_inputs(((m.source, m.revision) for m in grid.models),  # online: every repo, one pass
                     ((s, s.benchmarks) for s in {replace(grid.eval, suite=m.suite).load_suite() for m in grid.models}),
                     stage0=grid.eval.ppl_text in (None, "wikitext"))
    root = experiment_dir(opts)
    grid, pins = pin_models(grid, root / "ledger.jsonl")  # every trial, and every rerun, at one commit
    baselines, pruned = build_trials(grid)  # all input checks, before Ray starts
    check_eval_inputs(c.eval for c in baselines)
    with experiment_lock(root):  # one driver per experiment: a second one stops here, naming the first
        return _run_locked(baselines, pruned, grid, opts, root, pins)


def check_eval_inputs(evals: Iterable[EvalSpec]) -> None:
    """What every trial will evaluate, readable here: its suite's tasks and data (offline: cached; see
    evaluation/preflight.py) and stage 0's text. Not in build_trials: --estimate prices a grid offline."""
    for ev in set(evals):
        check_suite_inputs(ev.load_suite())
        load_documents(ev.ppl_text)  # a file with no text; lm-eval's WikiText-2 pages offline and uncached


def experiment_dir(opts: SweepOptions) -> Path:
    return Path(opts.storage).resolve() / opts.name


def _run_locked(baselines, pruned, grid: SweepGrid, opts: SweepOptions, root: Path, pins=()) -> SweepResult:
    ledger = Ledger(root / "ledger.jsonl")
    record_pins(pins, ledger)
    cache = str(root / "rankings")
    baselines = [_with_artifact_dir(c, root) for c in baselines]
    pruned = [replace(_with_artifact_dir(c, root), ranking_cache=cache) for c in pruned]
    tracker, uri = _tracker(opts, root)
    _init_ray(opts)
    check_storage_shared(root)  # a node that cannot see it: one line, before any trial
    tracker.start_sweep(opts.name, {"grid": repr(grid), "command": " ".join(sys.argv), **_provenance()})
    plans = {}  # model -> its items plan (PowerPlan.to_dict), for the report
    if grid.power is not None:  # each baseline's pilot sizes its model's items, before any trial
        baselines, pruned, plans = _items_by_power(grid, baselines, pruned, ledger, tracker, opts)
    configs = {c.key: c for c in baselines + pruned}
    tracker.set_runs_view(headline_keys(baselines + pruned))
    tracker.sync(ledger, configs)  # a previous attempt's results that never reached MLflow

    references = reference_trials(baselines, pruned, grid.stop, grid.metrics)
    whole = _measure_references(references, ledger, opts, root)
    searched = True
    if grid.widths is not None and whole:  # --widths auto: the pruned trials are known only now
        pruned, searched = _auto_widths(grid, baselines, ledger, tracker, opts, root)
        pruned = [replace(_with_artifact_dir(c, root), ranking_cache=cache) for c in pruned]
        configs.update({c.key: c for c in pruned})
        references = reference_trials(baselines, pruned, grid.stop, grid.metrics)
        whole = _measure_references(references, ledger, opts, root)  # the controls at the widths found
    ready, held = with_references(pruned, ledger.stage0(), baselines, references)
    configs.update({c.key: c for c in ready})
    if whole:
        trials = baselines + ready
        _run_phase("sweep", longest_first(trials, _expected_seconds(trials, ledger, opts)), ledger, tracker, opts, root)
    if held and whole:  # (cut short: the CLI says so, and the rerun measures them)
        log.warning("%d pruned trial(s) not started: their reference's stage 0 was not measured (%s); rerun the "
                    "same command", len(held), ", ".join(sorted({c.model_name for c in held})))

    rows = ledger.results()
    trials = tuple(baselines + [configs[c.key] for c in pruned])  # grid order
    ended = {e.key for e in ledger.events() if e.kind == "end"}
    finished = searched and all(c.key in ended for c in trials)
    try:
        tracker.sync(ledger, configs)
        tracker.publish(results_table(trials, rows), None)  # never raises; the CLI adds the report (above the sweep)
        tracker.end_sweep(finished)
    except Exception as err:  # noqa: BLE001 - the ledger holds every result; a rerun syncs them
        log.warning("MLflow at %s unreachable at the end of the sweep (%s): every result is kept in %s; "
                    "rerun the same command when it is back to log them", uri, first_line(err), ledger.path)
    return SweepResult(trials, rows, finished, root, uri, opts.name, len(held) if whole else 0, plans)


def _trial_lines(opts: SweepOptions) -> list:
    """The running trials' own progress lines, where the sweep prints anything (verbose >= 1)."""
    from glu_ray.sweep.progress import TrialLinesCallback  # lazy: Tune (see _fit)

    return [TrialLinesCallback()] if opts.verbose else []


def _measure_references(references, ledger: Ledger, opts: SweepOptions, root: Path) -> bool:
    """Each reference not yet measured: its trial, ended after stage 0 (its first report), alone on
    a whole GPU (the cluster is otherwise idle: first-fit would stack fractional ones on one GPU).
    False when cut short (Ctrl-C), so the sweep does not start."""
    from glu_ray.sweep.references import ReferenceCallback  # lazy: Tune (see _run_phase)

    measured = ledger.stage0()
    pending = [c for c in references if c.key not in measured]
    if not pending:
        return True
    done = ReferenceCallback(ledger, opts.verbose)
    gpu_mem = gpu_memory(opts.gpu_memory_gb)
    _fit("references", pending, [done, *_trial_lines(opts)], lambda config: _resources(config, opts, gpu_mem, whole_gpu=True), opts, root,
         last_stage=0)
    return done.ended >= {c.key for c in pending}


def _auto_widths(grid: SweepGrid, baselines, ledger: Ledger, tracker, opts: SweepOptions, root: Path):
    """(pruned trials at the widths --widths auto found, whether every search settled): the search
    is its own Tune experiment of stage-0 probes (sweep/width_searcher.py), in the ledger as
    ``width_search`` events and in MLflow as the sweep run's width_search.json."""
    from glu_ray.sweep.references import ReferenceCallback  # lazy: Tune (see _fit)
    from glu_ray.sweep.width_searcher import find_widths
    from glu_ray.trials.ledger import SEARCH

    gpu_mem = gpu_memory(opts.gpu_memory_gb)
    cache = str(root / "rankings")

    def run_probes(searcher, max_trials: int) -> None:
        _fit("widths", None, [ReferenceCallback(ledger, opts.verbose, kind=SEARCH), *_trial_lines(opts)],
             lambda config: _resources(config, opts, gpu_mem), opts, root, last_stage=0,
             searcher=searcher, num_samples=max_trials)

    templates = [replace(c, ranking_cache=cache) for c in baselines]  # probes share the sweep's rankings
    pruned, settled, record = find_widths(grid, templates, ledger, run_probes, opts.verbose)
    try:
        tracker.log_dict(record, "width_search.json")
    except Exception as err:  # noqa: BLE001 - the ledger holds every probe and choice
        log.warning("the width search's record did not reach MLflow (%s); it is in %s", first_line(err), ledger.path)
    return pruned, settled


def _items_by_power(grid: SweepGrid, baselines, pruned, ledger: Ledger, tracker, opts: SweepOptions):
    """Every trial with its model's per-task limits (sweep/items.py); the plans in MLflow."""
    from glu_ray.sweep.items import record, size_items
    from glu_ray.sweep.pilot_tasks import on_ray

    gpu_mem = gpu_memory(opts.gpu_memory_gb)
    share = on_ray(lambda cfg: _resources({"trial": cfg.to_dict()}, opts, gpu_mem))  # as its model's trials
    baselines, pruned, plans = size_items(grid.power, baselines, pruned, ledger, opts.verbose, measure=share)
    plans = record(plans)
    try:
        tracker.log_dict(plans, "items_by_power.json")
    except Exception as err:  # noqa: BLE001 - the ledger holds the pilot; the trials' params hold the limits
        log.warning("the items-by-power plan did not reach MLflow (%s)", first_line(err))
    return baselines, pruned, plans


def _expected_seconds(trials, ledger: Ledger, opts: SweepOptions) -> dict[str, float]:
    """The order's key: the cost model's seconds on a GPU; on a CPU, scaled to the ledger's
    measured trial times (plan.expected_seconds). Grid order when the model cannot price a trial."""
    import ray  # lazy, as in _resources

    gpu = ray.cluster_resources().get("GPU", 0) > 0
    mem = gpu_memory(opts.gpu_memory_gb)
    share_of = (lambda c: opts.gpu_fraction or gpu_fraction(c.num_params, mem)) if gpu else (lambda c: 1.0)
    try:
        modelled = {k: t.full for k, t in modelled_times(trial_costs(trials, share_of)).items()}
    except Exception as err:  # noqa: BLE001 - an order is an optimisation: never a reason to stop the sweep
        log.warning("trials run in grid order: the cost model could not price them (%s)", first_line(err))
        return {}
    return expected_seconds(trials, modelled, None if gpu else ledger.results())


def headline_keys(trials) -> list[str]:
    """What a researcher compares trials on: stage-0 perplexity, then each suite's headline scores."""
    keys = [PPL_WORD, PPL_RATIO]
    for cfg in trials:
        keys += [b.key for b in cfg.eval.load_suite().benchmarks if b.key not in keys]
    return keys


def _run_phase(phase, trials, ledger, tracker, opts, root) -> bool:
    """Run the trials not finished yet, in the given order (Tune's grid_search keeps it); False when
    it was cut short (Ctrl-C: Tune returns from fit with trials that never ended)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback  # lazy: Tune (see _fit)

    from glu_ray.sweep.progress import ProgressCallback
    from glu_ray.tracking.callback import TrackingCallback

    done = ledger.finished()
    pending = [c for c in trials if c.key not in done]
    if not pending:
        return True
    gpu_mem = gpu_memory(opts.gpu_memory_gb)
    # Tune's per-trial CSV/JSON results stay; its TensorBoard logger only at verbose 2 (MLflow is
    # the tracker, and that logger warns once per trial about tuple params).
    callbacks = [TrackingCallback(ledger, tracker), CSVLoggerCallback(), JsonLoggerCallback()] \
        + ([ProgressCallback(len(pending), budget=opts.budget)] if opts.verbose else [])
    _fit(phase, pending, callbacks, lambda config: _resources(config, opts, gpu_mem), opts, root)
    ended = {e.key for e in ledger.events() if e.kind == "end"}
    return all(c.key in ended for c in pending)


def _fit(phase, pending, callbacks, resources, opts: SweepOptions, root: Path, last_stage: int | None = None,
         searcher=None, num_samples: int = 1) -> None:
    """One Tune experiment over ``pending``, in order; or, with a ``searcher``, over what it suggests
    (at most ``num_samples`` trials). ``last_stage``: each trial ends once it has reported it."""
    # Ray Tune and the callbacks (which subclass Tune's) are imported where a sweep runs: Tune
    # costs ~5 s at import (python -X importtime), which --estimate and --help never need.
    from ray import tune

    trainable = run_trial if last_stage is None else tune.with_parameters(run_trial, last_stage=last_stage)
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={} if searcher else {"trial": tune.grid_search([c.to_dict() for c in pending])},
        tune_config=tune.TuneConfig(max_concurrent_trials=opts.max_concurrent, reuse_actors=True,
                                    search_alg=searcher, num_samples=num_samples),
        run_config=tune.RunConfig(
            name=f"{phase}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(root / "ray"),
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            # Tune's reporter (a configuration box per trial, a status table) only at verbose 2:
            # below it, ProgressCallback prints one line per trial event instead.
            verbose=1 if opts.verbose >= 2 else 0,
        ),
    )
    with _tune_env(quiet=opts.verbose < 2):
        tuner.fit()  # trial errors are recorded by the callbacks, never raised here


@contextmanager
def _tune_env(quiet: bool) -> Iterator[None]:
    """Tune's environment switches for one fit. Quiet: Tune's new reporter prints an experiment
    box and a TensorBoard hint even at verbose 0; its legacy one at 0 prints nothing. Tune's result
    grid warns about trials it has no result files for (the stage-0-only reference and width-search
    runs, ended after their first report): the ledger holds every result, so quiet hides that.
    Quiet, a failed trial is one line (the progress line, the ledger, MLflow's error tag), not Tune's
    traceback of it (kept in the trial's folder under ``ray/``) and its closing list of Tune ids."""
    switches = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                "TUNE_PRINT_ALL_TRIAL_ERRORS": "0"} if quiet else {}
    grid_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = grid_log.level
    tune_log, incomplete = logging.getLogger("ray.tune.tune"), _Drop("Trials did not complete")
    if quiet:
        grid_log.setLevel(logging.ERROR)
        tune_log.addFilter(incomplete)
    try:
        with env_defaults(switches):
            yield
    finally:
        grid_log.setLevel(level)
        tune_log.removeFilter(incomplete)


class _Drop(logging.Filter):
    """Drops a logger's records that start with ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def _resources(config: dict, opts: SweepOptions, gpu_mem: int, whole_gpu: bool = False) -> dict:
    import ray  # lazy: ~1 s at import, only where a sweep runs (see _fit)

    cfg = TrialConfig.from_dict(config["trial"])
    if ray.cluster_resources().get("GPU", 0) > 0:
        frac = 1.0 if whole_gpu else opts.gpu_fraction or gpu_fraction(cfg.num_params, gpu_mem)
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
