"""MLflow in one place for analysis: read a sweep's trials into the tidy table, find the sweep's
parent run, and log a finished report to it."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from analysis.benchmarks import STAGE0, benchmark_meta
from analysis.tidy import BASELINE, COMPLETED, RunInfo, number, size_label, tidy_frame, tidy_rows
from glu_ray.errors import GluRayError
from glu_ray.vocab import DECODE_TOK_S, ENERGY_J_PER_TOK, PARAMS_TOTAL, efficiency_key

PARETO_BATCH = 1  # the study's throughput figure: one request at a time

# ---------------------------------------------------------------- MLflow sweep experiments

TRIAL_FILTER = "tags.`glu_ray.role` = 'trial'"
SWEEP_FILTER = "tags.`glu_ray.role` = 'sweep'"


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
    """Every trial of a sweep. MLflow's run metrics are already the latest value per key, which
    with step = stage is the last stage that logged it."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = _experiment(client, experiment)
    trials = _search(client, exp.experiment_id, TRIAL_FILTER)
    if not trials:
        raise GluRayError(f"experiment {experiment!r} has no trial runs (tag glu_ray.role=trial)")
    rows = []
    for run in trials:
        params, status = run.data.params, run.data.tags.get("glu_ray.status", COMPLETED)
        info = _mlflow_info(params, status, run.data.metrics)
        # A trial stopped early keeps rows for the benchmarks it never reached (score NaN):
        # fragility reads them as a floor, not as missing data.
        meta = {**benchmark_meta(params.get("suite")), STAGE0.name: STAGE0}
        rows += tidy_rows(info, run.data.metrics, meta, keep_missing=status.startswith("stopped"))
    return tidy_frame(rows)


def _mlflow_info(params: Mapping[str, str], status: str, metrics: Mapping[str, float]) -> RunInfo:
    hidden, inter = number(params.get("hidden_size")), number(params.get("intermediate_size"))
    baseline = params.get("metric", "none") in ("none", "", BASELINE)
    ratio = number(params.get("expansion_ratio"))
    return RunInfo(
        model=params.get("model_name") or params.get("model", "?"),
        size=size_label(number(params.get("num_params"))),
        variant=params.get("variant", "base"),
        method=BASELINE if baseline else params["metric"],
        expansion_ratio=inter / hidden if baseline and math.isnan(ratio) else ratio,
        pruning_pct=0.0 if baseline else number(params.get("pruning_pct")),
        width=inter if baseline else number(params.get("width")),
        status=status,
        decode_tok_s=number(metrics.get(efficiency_key(DECODE_TOK_S, PARETO_BATCH))),
        # Parameters are known without the efficiency stage too: the trial logs what it kept.
        params=number(metrics.get(efficiency_key(PARAMS_TOTAL), params.get("params_kept"))),
        energy_j_per_tok=number(metrics.get(efficiency_key(ENERGY_J_PER_TOK, PARETO_BATCH))),
    )


def sweep_run_id(experiment: str, tracking_uri: str | None = None) -> str:
    """The sweep's parent run (the latest, if a sweep was restarted): where the report is logged."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = _search(client, _experiment(client, experiment).experiment_id, SWEEP_FILTER)
    if not runs:
        raise GluRayError(f"experiment {experiment!r} has no sweep run (tag glu_ray.role=sweep)")
    return max(runs, key=lambda r: r.info.start_time or 0).info.run_id


def log_report(run_id: str, folder, tracking_uri: str | None = None) -> None:
    """Attach a written report folder to the sweep's parent run, under ``report/``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    client.log_artifacts(run_id, str(folder), artifact_path="report")
    client.set_tag(run_id, "glu_ray.report", "report/report.html")
