"""MLflow in one place for analysis: read a sweep's trials into the tidy table, find the sweep's
parent run, and log a finished report to it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.tidy import tidy_frame
from analysis.trials import trial_rows
from glu_ray.environment import env_defaults
from glu_ray.errors import GluRayError
from glu_ray.trials.config import TrialConfig
from glu_ray.tracking.artifacts import ITEM_SCORES
from glu_ray.tracking.runs import log_report_folder
from glu_ray.vocab import ROLE_SWEEP, ROLE_TRIAL, STATUS_TAG, TRIAL_CONFIG_TAG, TrialStatus, role_filter

# ---------------------------------------------------------------- MLflow sweep experiments

TRIAL_FILTER = role_filter(ROLE_TRIAL)
SWEEP_FILTER = role_filter(ROLE_SWEEP)
ITEMS_PLAN = "items_by_power.json"  # the sweep run's artifact (glu_ray/sweep/driver.py)
# MLflow draws a progress bar per file downloaded: one a trial run would bury the report's output
QUIET_DOWNLOADS = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def _search(client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _experiment(client, name: str):
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise GluRayError(f"no MLflow experiment named {name!r} at {client.tracking_uri}")
    return exp


def from_mlflow(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every trial of a sweep. Identity comes typed from the run's TrialConfig tag; MLflow's run
    metrics are already the latest value per key, which with step = stage is the last stage."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = _experiment(client, experiment)
    trials = _search(client, exp.experiment_id, TRIAL_FILTER)
    if not trials:
        raise GluRayError(f"experiment {experiment!r} has no trial runs (tag {TRIAL_FILTER})")
    plans = _items_plans(client, exp.experiment_id)
    rows = []
    for run in trials:
        tags = run.data.tags
        if TRIAL_CONFIG_TAG not in tags:
            raise GluRayError(f"trial run {run.info.run_id} has no {TRIAL_CONFIG_TAG} tag: not written by glu-ray's sweep")
        cfg = TrialConfig.from_dict(json.loads(tags[TRIAL_CONFIG_TAG]))
        rows += trial_rows(cfg, run.data.metrics, TrialStatus(tags.get(STATUS_TAG, TrialStatus.COMPLETED)), plans,
                           _artifact_json(client, run.info.run_id, ITEM_SCORES))
    return tidy_frame(rows)


def _artifact_json(client, run_id: str, name: str) -> dict:
    """A run's JSON artifact ``name``, or {} where it has none or it cannot be read."""
    if name not in {f.path for f in client.list_artifacts(run_id)}:
        return {}
    from mlflow.exceptions import MlflowException

    try:
        with env_defaults(QUIET_DOWNLOADS):
            return json.loads(Path(client.download_artifacts(run_id, name)).read_text())
    except (MlflowException, OSError, ValueError):
        return {}


def _items_plans(client, experiment_id: str) -> dict:
    """The latest sweep run's items_by_power.json (every run of a --items-by-power sweep logs its
    plans, a rerun's read from the ledger), else {}: every benchmark stays in."""
    run_id = _latest_sweep_run(client, experiment_id)
    return {} if run_id is None else _artifact_json(client, run_id, ITEMS_PLAN)  # unreadable: every benchmark stays in


def _latest_sweep_run(client, experiment_id: str) -> str | None:
    runs = _search(client, experiment_id, SWEEP_FILTER)
    return max(runs, key=lambda r: r.info.start_time or 0).info.run_id if runs else None


def sweep_run_id(experiment: str, tracking_uri: str | None = None) -> str:
    """The sweep's parent run (the latest, if a sweep was restarted): where the report is logged."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    run_id = _latest_sweep_run(client, _experiment(client, experiment).experiment_id)
    if run_id is None:
        raise GluRayError(f"experiment {experiment!r} has no sweep run (tag {SWEEP_FILTER})")
    return run_id


def log_report(run_id: str, folder, tracking_uri: str | None = None) -> None:
    """Attach a written report folder to the sweep's parent run, under ``report/``."""
    from mlflow import MlflowClient

    log_report_folder(MlflowClient(tracking_uri), run_id, folder)
