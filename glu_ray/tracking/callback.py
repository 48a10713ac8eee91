"""The driver-side Tune callback: every trial event goes to the ledger first, then to MLflow.

Ray calls these hooks in the driver process, so MLflow has a single writer; a trial's files
(written by the trial into ``TrialConfig.artifact_dir``) are logged from here when it ends. A tracking error
never takes the sweep down: the result is already in the ledger and ``Tracker.sync`` replays it.
"""

from __future__ import annotations

import logging

from ray.tune import Callback

from glu_ray.errors import GluRayError
from glu_ray.trials.config import TrialConfig
from glu_ray.trials.ledger import Event, Ledger
from glu_ray.tracking.runs import Tracker, metrics_of
from glu_ray.vocab import BOOKKEEPING, IDENTITY, STAGE, STATUS, TrialStatus, is_own_metric, safe

log = logging.getLogger("glu_ray")


class TrackingCallback(Callback):
    def __init__(self, ledger: Ledger, tracker: Tracker | None):
        self.ledger = ledger
        self.tracker = tracker
        self.runs: dict[str, str] = {}  # Tune trial id -> MLflow run id
        self.last: dict[str, dict] = {}  # Tune trial id -> last result data
        self.dirty = False  # some MLflow write failed: sync from the ledger at the end

    @staticmethod
    def _cfg(trial) -> TrialConfig:
        return TrialConfig.from_dict(trial.config["trial"])

    def _track(self, fn, *args):
        if self.tracker is None or self.dirty:
            return None  # after one failed write, skip MLflow (each try can block) until the final sync
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - tracking must never kill the sweep
            if not self.dirty:
                log.warning("MLflow write failed (%s); results are kept in %s and synced later", err, self.ledger.path)
            self.dirty = True
            return None

    def on_trial_start(self, iteration, trials, trial, **info):
        self.last.pop(trial.trial_id, None)
        run_id = self._track(lambda: self.tracker.trial_run(self._cfg(trial), fresh=True))
        if run_id:
            self.runs[trial.trial_id] = run_id

    on_trial_restore = on_trial_start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        cfg = self._cfg(trial)
        numeric = metrics_of(result)
        ours = own_metrics(cfg)
        data = {k: result[k] for k in result if k in IDENTITY or k in BOOKKEEPING or (k in numeric and ours(k))}
        stage, status = int(result[STAGE]), TrialStatus(result[STATUS])
        self.ledger.append(Event(cfg.key, "result", stage, status, data))
        self.last[trial.trial_id] = data
        if trial.trial_id in self.runs:
            self._track(self.tracker.log_stage, self.runs[trial.trial_id], stage, data)

    def on_trial_complete(self, iteration, trials, trial, **info):
        status = TrialStatus(self.last.get(trial.trial_id, {}).get(STATUS, TrialStatus.FAILED))
        if status is TrialStatus.RUNNING:  # ended without its final report: Tune stopped it
            status = TrialStatus.FAILED
        self._end(trial, status, None if status is not TrialStatus.FAILED else "trial ended before its last stage")

    def on_trial_error(self, iteration, trials, trial, **info):
        err = error_text(trial) or "trial raised"
        self._end(trial, TrialStatus.FAILED, last_line(str(err)))

    def _end(self, trial, status: TrialStatus, error: str | None) -> None:
        cfg = self._cfg(trial)
        self.ledger.append(Event(cfg.key, "end", None, status, {"error": error} if error else {}))
        run_id = self.runs.pop(trial.trial_id, None)
        if run_id:
            # Files before the final status: a run marked finished is never revisited by sync.
            self._track(self.tracker.log_trial_artifacts, run_id, cfg.artifact_dir)
            self._track(self.tracker.end_trial, run_id, status, error)


def own_metrics(cfg: TrialConfig):
    """``key -> bool``: a metric the trial reported (its stage-0 and timing keys, its suite's
    benchmarks), not one Ray added to the result (time_this_iter_s, pid, ...)."""
    names = frozenset(safe(n) for n in cfg.eval.load_suite().names)
    return lambda key: is_own_metric(key, names)


def error_text(trial) -> str | None:
    """The trial's traceback. Ray writes it to the trial's local error file first (``error_file``)
    and copies it to storage (``get_error``) later; older Rays kept ``error_msg``."""
    for read in (lambda: open(trial.error_file).read(), trial.get_error):
        try:
            text = read()
        except Exception:  # noqa: BLE001 - not written (yet) there: try the next place
            continue
        if text:
            return str(text)
    return getattr(trial, "error_msg", None)


def error_line(trial) -> str:
    """A failed trial's error on one line, for the terminal: its traceback's last line, a GluRayError
    (a message for the user) without its type's name."""
    line = last_line(error_text(trial) or "trial raised")
    return line.removeprefix(f"{GluRayError.__module__}.{GluRayError.__name__}: ")


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text
