"""MLflow tracking, written only from the sweep's driver (so SQLite never sees two writers).

Layout: one experiment per sweep; one parent run (tag ``glu_ray.role=sweep``) and one child run
per trial (``glu_ray.role=trial``, ``mlflow.parentRunId``), named like ``Llama-3.2-1B/maw/2.4x``.
Child runs carry params, per-stage metrics (step = stage) and a ``glu_ray.status`` tag.
Every write can be replayed from the ledger, so reruns and a returning server never duplicate.
"""

from __future__ import annotations

import time
from pathlib import Path

from glu_ray.config import TrialConfig
from glu_ray.ledger import FINAL, Ledger

ROLE, STATUS, KEY = "glu_ray.role", "glu_ray.status", "glu_ray.trial_key"
_RUN_STATE = {"completed": "FINISHED", "stopped: catastrophic": "FINISHED", "failed": "FAILED"}
# Result fields that are identity or bookkeeping, logged as params rather than metrics.
IDENTITY = ("trial_key", "model", "model_name", "metric", "expansion_ratio", "pruning_pct", "width", "status", "stage")


def default_tracking_uri(storage: str | Path) -> str:
    return f"sqlite:///{Path(storage).resolve() / 'mlflow.db'}"


def trial_params(cfg: TrialConfig) -> dict[str, str]:
    """What a researcher filters on in the MLflow UI. Never includes credentials."""
    import lm_eval

    p = {
        "model": cfg.model, "model_name": cfg.model_name, "revision": cfg.revision or "main",
        "metric": cfg.metric or "none", "expansion_ratio": f"{cfg.expansion_ratio:.4f}",
        "pruning_pct": f"{cfg.pruning_pct:.3f}", "width": cfg.width, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_params": cfg.num_params, "variant": cfg.variant,
        "suite": cfg.eval.suite, "tasks": ",".join(cfg.eval.tasks or ()) or "all", "limit": cfg.eval.limit,
        "batch_size": cfg.eval.batch_size, "max_length": cfg.eval.max_length, "threshold": cfg.threshold,
        "baseline_ppl": cfg.baseline_ppl, "seed": cfg.seed, "lm_eval_version": lm_eval.__version__,
    }
    return {k: str(v) for k, v in p.items()}


def metrics_of(data: dict) -> dict[str, float]:
    return {k: float(v) for k, v in data.items()
            if k not in IDENTITY and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            experiment, artifact_location=Path(artifact_root).resolve().as_uri() if artifact_root else None)
        self.parent_id: str | None = None

    # -- runs ----------------------------------------------------------------------------
    def _find(self, tag: str, value: str):
        runs = self.client.search_runs([self.experiment_id], f"tags.`{tag}` = '{value}'", max_results=100)
        return sorted(runs, key=lambda r: r.info.start_time)

    def start_sweep(self, name: str, params: dict[str, str]) -> str:
        """The sweep's parent run; a rerun of the same sweep reopens it."""
        found = self._find(ROLE, "sweep")
        if found:
            self.parent_id = found[-1].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=name, tags={ROLE: "sweep"})
            self.parent_id = run.info.run_id
            self._log(self.parent_id, params={k: str(v)[:6000] for k, v in params.items()})
        return self.parent_id

    def end_sweep(self, finished: bool) -> None:
        if self.parent_id:
            self.client.set_terminated(self.parent_id, "FINISHED" if finished else "KILLED")

    def trial_run(self, cfg: TrialConfig, *, fresh: bool) -> str:
        """The trial's child run. ``fresh`` drops a half-written run left by an interrupted attempt."""
        runs = self._find(KEY, cfg.key)
        keep = [r for r in runs if r.data.tags.get(STATUS) in FINAL]
        if keep and not fresh:
            return keep[-1].info.run_id
        for r in runs:
            if r not in keep or fresh:
                self.client.delete_run(r.info.run_id)
        tags = {ROLE: "trial", KEY: cfg.key, STATUS: "running", "mlflow.parentRunId": self.parent_id or ""}
        run = self.client.create_run(self.experiment_id, run_name=cfg.name, tags=tags)
        self._log(run.info.run_id, params=trial_params(cfg))
        return run.info.run_id

    def log_stage(self, run_id: str, stage: int, data: dict) -> None:
        self._log(run_id, metrics=metrics_of(data), step=stage)

    def end_trial(self, run_id: str, status: str, error: str | None = None) -> None:
        tags = {STATUS: status, **({"glu_ray.error": error[:5000]} if error else {})}
        self._log(run_id, tags=tags)
        self.client.set_terminated(run_id, _RUN_STATE.get(status, "FAILED"))

    def _log(self, run_id: str, *, params=None, metrics=None, tags=None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )

    # -- replay --------------------------------------------------------------------------
    def sync(self, ledger: Ledger, configs: dict[str, TrialConfig]) -> int:
        """Make MLflow match the ledger for every trial that ended; returns runs rewritten."""
        tracked = {r.data.tags.get(KEY): r.data.tags.get(STATUS) for r in self._find(ROLE, "trial")}
        events = ledger.events()
        ends = {e.key: e for e in events if e.kind == "end"}
        rewritten = 0
        for key, end in ends.items():
            if key not in configs or tracked.get(key) == end.status:
                continue
            run_id = self.trial_run(configs[key], fresh=True)
            for e in latest_attempt(events, key):
                self.log_stage(run_id, e.stage, e.data)
            self.end_trial(run_id, end.status, end.data.get("error"))
            rewritten += 1
        return rewritten


def latest_attempt(events, key: str) -> list:
    """The result events of a trial's last attempt (each attempt starts at stage 0)."""
    mine = [e for e in events if e.key == key and e.kind == "result"]
    starts = [i for i, e in enumerate(mine) if e.stage == 0]
    return mine[starts[-1]:] if starts else mine
