"""MLflow tracking of a real tiny sweep (real Ray, lm-eval, SQLite store): what a researcher browses.

The session's finished tiny sweep (conftest.finished_tiny_sweep): one tiny model x {maw, pon} x
50% + its baseline, with a Hugging Face token in the environment and on the command line: the token
must never reach a param, tag or artifact.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest

from conftest import SWEEP_EXPERIMENT as EXPERIMENT
from conftest import SWEEP_TOKEN as TOKEN
from glu_ray.trials.ledger import Ledger
from glu_ray.sweep.driver import run_sweep
from glu_ray.tracking.runs import REDACTED, metrics_of, scrub
from glu_ray.vocab import TrialStatus


@pytest.fixture(scope="module")
def tracked(finished_tiny_sweep):
    return finished_tiny_sweep


def all_runs(uri: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list", max_results=1000)


def split(runs):
    parents = [r for r in runs if r.data.tags.get("glu_ray.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("glu_ray.role") == "trial"]
    return parents, children


@pytest.mark.slow
def test_search_runs_returns_the_parent_and_one_child_per_trial_with_metrics_and_status(tracked):
    result, _, _ = tracked
    assert result.finished
    parents, children = split(all_runs(result.tracking_uri))
    assert len(parents) == 1
    parent = parents[0]
    assert sorted(r.info.run_name for r in children) == sorted(t.name for t in result.trials)
    rows = Ledger(result.experiment_dir / "ledger.jsonl").results()
    for run in children:
        trial = next(t for t in result.trials if t.name == run.info.run_name)
        row = rows[trial.key]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["glu_ray.status"] == row["status"] == "completed"
        assert run.info.status == "FINISHED"
        for key, value in metrics_of(row).items():  # every metric the trial reported
            logged = run.data.metrics[key]
            assert (math.isnan(value) and math.isnan(logged)) or logged == pytest.approx(value), key


@pytest.mark.slow
def test_metrics_are_logged_per_stage_with_step_equal_to_stage(tracked):
    from mlflow.tracking import MlflowClient

    result, _, _ = tracked
    client = MlflowClient(result.tracking_uri)
    _, children = split(all_runs(result.tracking_uri))
    run = next(r for r in children if r.info.run_name.endswith("/maw/2x"))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "ppl/word_perplexity")] == [0]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "tiny_mc/acc_norm")] == [1]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "tiny_wikitext/word_perplexity")] == [2]


@pytest.mark.slow
def test_params_say_what_ran_and_on_what(tracked):
    import lm_eval

    result, _, _ = tracked
    parents, children = split(all_runs(result.tracking_uri))
    params = parents[0].data.params
    for key in ("grid", "command", "git_commit", "version_torch", "version_transformers", "version_lm_eval",
                "version_ray", "version_mlflow", "hardware_cluster_cpus", "hardware_gpu_names"):
        assert params.get(key), key
    assert int(params["hardware_cluster_cpus"]) >= 1
    pruned = next(r for r in children if r.info.run_name.endswith("/pon/2x")).data.params
    assert pruned["fewshot"] == "tiny_mc:0,tiny_wikitext:0"
    assert pruned["metric"] == "pon" and pruned["width"] == "64" and float(pruned["pruning_pct"]) == 50
    assert pruned["lm_eval_version"] == lm_eval.__version__ and pruned["suite"] == "tiny"
    baseline = next(r for r in children if r.info.run_name.endswith("/baseline")).data.params
    assert int(pruned["params_kept"]) < int(baseline["params_kept"])


@pytest.mark.slow
def test_each_trial_run_has_its_lm_eval_results_config_and_widths(tracked, tmp_path):
    from mlflow.tracking import MlflowClient

    result, _, _ = tracked
    client = MlflowClient(result.tracking_uri)
    _, children = split(all_runs(result.tracking_uri))
    for run in children:
        trial = next(t for t in result.trials if t.name == run.info.run_name)
        names = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert names == {"config.json", "widths.json", "lm_eval_results.json", "item_scores.json"}, run.info.run_name
        local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))
        assert json.loads((local / "config.json").read_text())["intermediate_size"] == trial.width.width
        widths = json.loads((local / "widths.json").read_text())
        assert widths == {"original": 128, "layers": [trial.width.width, trial.width.width]}
        raw = json.loads((local / "lm_eval_results.json").read_text())
        assert set(raw) == {"stage1", "stage2"}
        assert "tiny_mc" in raw["stage1"]["results"] and "tiny_wikitext" in raw["stage2"]["results"]
        items = json.loads((local / "item_scores.json").read_text())
        assert set(items) == {"stage1"}  # stage 2's one benchmark is a perplexity: not a mean over items
        scores = items["stage1"]["tiny_mc"]
        assert sum(scores.values()) / len(scores) == pytest.approx(run.data.metrics["tiny_mc/acc_norm"])


@pytest.mark.slow
def test_parent_run_holds_the_results_table_and_the_report(tracked, tmp_path):
    import pandas as pd
    from mlflow.tracking import MlflowClient

    result, _, _ = tracked
    client = MlflowClient(result.tracking_uri)
    parent = split(all_runs(result.tracking_uri))[0][0]
    names = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "results.json", "report"} <= names
    csv = pd.read_csv(client.download_artifacts(parent.info.run_id, "results.csv", str(tmp_path)))
    assert sorted(csv["trial"]) == sorted(t.name for t in result.trials)
    assert set(csv["status"]) == {"completed"}
    table = client.load_table(parent.info.experiment_id, "results.json", run_ids=[parent.info.run_id])
    assert len(table) == len(result.trials)
    report = {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.html"} <= report
    assert parent.data.tags["glu_ray.report"] == "report/report.html"


@pytest.mark.slow
def test_no_token_in_any_param_tag_or_artifact(tracked, tmp_path):
    from mlflow.tracking import MlflowClient

    result, _, _ = tracked
    client = MlflowClient(result.tracking_uri)
    runs = all_runs(result.tracking_uri)
    parent = split(runs)[0][0]
    assert REDACTED in parent.data.params["command"]  # the guard did meet the token, and hid it
    for run in runs:
        for key, value in {**run.data.params, **run.data.tags}.items():
            assert TOKEN not in key and TOKEN not in value, (run.info.run_name, key)
        local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))
        for path in local.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_rerun_duplicates_nothing(tracked):
    from mlflow.tracking import MlflowClient

    result, grid, opts = tracked
    before = {r.info.run_id for r in all_runs(result.tracking_uri)}
    again = run_sweep(grid, opts)
    assert again.finished
    after = all_runs(result.tracking_uri)
    assert {r.info.run_id for r in after} == before
    parent = split(after)[0][0]
    client = MlflowClient(result.tracking_uri)
    table = client.load_table(parent.info.experiment_id, "results.json", run_ids=[parent.info.run_id])
    assert len(table) == len(result.trials)  # replaced, not appended to
    # ... by the rerun's table: its trials in grid order, each with the status the ledger holds
    assert table["trial"].tolist() == [c.name for c in again.trials]
    assert table["status"].tolist() == [TrialStatus(again.rows[c.key]["status"]).value for c in again.trials]


# -- fast: the secrets guard on its own ---------------------------------------------------------

def test_scrub_drops_credential_keys_and_redacts_credential_values():
    secrets = {"s3cr3t-value-from-env"}
    out = scrub({"hf_token": "anything", "MLFLOW_TRACKING_PASSWORD": "x", "api_key": "y", "tokenizer": "byte-level",
                 "max_tokens": "5", "command": "run --note s3cr3t-value-from-env --tok " + TOKEN, "model": "tiny"},
                secrets)
    assert out == {"tokenizer": "byte-level", "max_tokens": "5", "model": "tiny",
                   "command": f"run --note {REDACTED} --tok {REDACTED}"}


def test_secret_values_come_from_credential_named_env_vars(monkeypatch):
    from glu_ray.tracking.runs import secret_values

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("SOME_SERVICE_PASSWORD", "correct-horse-battery")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false-but-long")  # named like, not a credential
    found = secret_values()
    assert {TOKEN, "correct-horse-battery"} <= found and "false-but-long" not in found


# -- fast: `glu-ray ui` refuses clearly before starting anything --------------------------------

def test_ui_without_a_store_says_so_on_one_line(tmp_path, capsys):
    from glu_ray.cli.main import main

    assert main(["ui", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no MLflow store under" in err


def test_ui_on_a_port_in_use_says_so_on_one_line(tmp_path, capsys):
    from glu_ray.cli.main import main
    from glu_ray.tracking.runs import Tracker

    (tmp_path / "exp").mkdir()
    Tracker(f"sqlite:///{tmp_path / 'exp' / 'mlflow.db'}", "exp")  # a store with one experiment
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--storage", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's own log of opening the store
    assert err == f"glu-ray ui: error: port {port} on 127.0.0.1 is in use (choose another with --port)"


def test_ui_finds_the_experiment_page_and_binds_loopback_by_default(tmp_path):
    from glu_ray.cli.main import build_parser
    from glu_ray.cli.ui import experiment_fragment, find_store, server_command
    from glu_ray.tracking.runs import Tracker

    (tmp_path / "exp").mkdir()
    tracker = Tracker(f"sqlite:///{tmp_path / 'exp' / 'mlflow.db'}", "exp", artifact_root=str(tmp_path / "exp" / "mlartifacts"))
    store = find_store(None, tmp_path, None)
    assert store.experiment == "exp" and store.artifacts == (tmp_path / "exp" / "mlartifacts").resolve()
    assert experiment_fragment(store, explicit=False).startswith(f"#/experiments/{tracker.experiment_id}/runs")
    args = build_parser().parse_args(["ui"])
    cmd = server_command(store, args.host, args.port)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5000"


def test_ui_opens_the_runs_table_with_the_sweeps_metric_columns(tmp_path):
    """The sweep stores a runs-table view (MLflow's shared view state) naming its headline metrics;
    `glu-ray ui` links it, so the table opens with those columns instead of none."""
    from mlflow.tracking import MlflowClient

    from glu_ray.cli.ui import experiment_fragment, find_store
    from glu_ray.tracking.runs import Tracker
    from glu_ray.vocab import PPL_WORD, RUNS_VIEW_KEY, RUNS_VIEW_TAG

    (tmp_path / "exp").mkdir()
    tracker = Tracker(f"sqlite:///{tmp_path / 'exp' / 'mlflow.db'}", "exp", artifact_root=str(tmp_path / "exp" / "a"))
    store = find_store(None, tmp_path, None)
    assert "viewStateShareKey" not in experiment_fragment(store, explicit=False)  # no view stored yet
    tracker.set_runs_view([PPL_WORD, "tiny_mc/acc_norm"])
    view = json.loads(MlflowClient(tracker.uri).get_experiment(tracker.experiment_id).tags[RUNS_VIEW_TAG])
    assert view["selectedColumns"][-2:] == [f"metrics.`{PPL_WORD}`", "metrics.`tiny_mc/acc_norm`"]
    assert "params.`metric`" in view["selectedColumns"] and "tags.`glu_ray.status`" in view["selectedColumns"]
    assert experiment_fragment(store, explicit=False).endswith(f"&viewStateShareKey={RUNS_VIEW_KEY}")
