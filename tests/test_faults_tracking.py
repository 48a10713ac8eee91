"""The MLflow tracking server dies mid-sweep: a real ``mlflow server`` on 127.0.0.1, killed once the
baselines have finished. The sweep must still finish with every result in its ledger and a warning;
once the server is back on the same port and store, a rerun of the same sweep syncs everything
with exactly one child run per trial and every metric."""

from __future__ import annotations

import logging
import subprocess
import threading
import urllib.request

import pytest

from faultkit import BIN, assert_mlflow_matches_ledger, free_port, kill_tree, offline_env, tiny_model, wait_until
from glu_ray.trials.stop_rule import StopRule
from glu_ray.trials.config import EvalSpec
from glu_ray.sweep.grid import ModelSpec, SweepGrid
from glu_ray.trials.ledger import Ledger
from glu_ray.sweep.driver import SweepOptions, run_sweep
from glu_ray.pruning.widths import TargetWidth

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def start_server(port: int, store) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--default-artifact-root", (store / "art").as_uri()],
        env=offline_env(), stdout=open(store / f"server-{port}.log", "a"), stderr=subprocess.STDOUT,
        start_new_session=True)

    def healthy():
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited: {(store / f'server-{port}.log').read_text()[-2000:]}")
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
        except OSError:
            return False

    wait_until(healthy, timeout=180, what="mlflow server", step=0.5)
    return proc


def test_server_killed_mid_sweep_then_back(tmp_path_factory, monkeypatch, caplog, ray_cluster):
    model, text = tiny_model(tmp_path_factory.getbasetemp())
    root = tmp_path_factory.mktemp("outage")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    # A dead server must cost seconds per write, not MLflow's default minutes of retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    grid = SweepGrid((ModelSpec(str(model), "tiny"),), ("maw",), (TargetWidth(pruning_pct=25), TargetWidth(pruning_pct=50)),
                     EvalSpec(suite="tiny", tasks=("tiny_mc",), limit=4, batch_size=4, ppl_text=str(text)), stop=StopRule(threshold=1e6))
    opts = SweepOptions(name="outage", storage=str(root / "runs"), tracking_uri=uri, max_concurrent=2, verbose=0)
    ledger_path = root / "runs" / "outage" / "ledger.jsonl"
    server = start_server(port, root)
    killed = threading.Event()

    def kill_after_baselines():
        try:
            wait_until(lambda: ledger_path.exists() and any(e.kind == "end" for e in Ledger(ledger_path).events()),
                       timeout=900, what="the baseline's end")
        finally:
            kill_tree(server)
            killed.set()

    watcher = threading.Thread(target=kill_after_baselines, daemon=True)
    watcher.start()
    try:
        with caplog.at_level(logging.WARNING, logger="glu_ray"):
            first = run_sweep(grid, opts)
        watcher.join(timeout=60)
        assert killed.is_set()
        assert first.finished  # the outage cost no trial
        ledger = Ledger(ledger_path)
        assert set(ledger.finished().values()) == {"completed"} and len(ledger.finished()) == 3
        warned = " ".join(r.getMessage() for r in caplog.records)
        assert "MLflow" in warned and str(ledger_path) in warned

        server = start_server(port, root)  # back, same port, same store
        again = run_sweep(grid, opts)
        assert again.finished
        assert sum(1 for e in Ledger(ledger_path).events() if e.kind == "end") == 3  # no trial ran again
        assert_mlflow_matches_ledger(uri, "outage", ledger_path, [c.key for c in again.trials])
    finally:
        kill_tree(server)


def test_unreachable_server_at_start_fails_fast_before_any_trial(tmp_path, tiny_model_dir):
    from glu_ray.errors import GluRayError

    port = free_port()  # nothing listens here
    text = tmp_path / "stage0.txt"
    text.write_text("Once upon a time there was a fish.\n")
    grid = SweepGrid((ModelSpec(str(tiny_model_dir), "tiny"),), ("maw",), (TargetWidth(pruning_pct=50),),
                     EvalSpec(suite="tiny", tasks=("tiny_mc",), limit=4, ppl_text=str(text)))
    opts = SweepOptions(name="down", storage=str(tmp_path), tracking_uri=f"http://127.0.0.1:{port}")
    with pytest.raises(GluRayError, match="unreachable"):
        run_sweep(grid, opts)
    assert not (tmp_path / "down" / "ray").exists()  # Ray never started a trial
