"""The two sweeps of tests/test_hub_stopped.py, as a function: conftest starts it in a thread when the
session starts (it is ~1 minute of subprocesses, mostly Ray's start-up and waits), and the module's
fixture collects the result. See test_hub_stopped.py for what it sets up and why.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import HUB_DIR, REPO
from faultkit import free_port, kill_tree, wait_until
from glu_ray.trials.ledger import Ledger

CACHED, UNCACHED = "glu-ray-test/stories260K", "glu-ray-test/stories260K-b"
SERVE = REPO / "tools" / "hub_mirror" / "serve.py"
EXPERIMENT = "hub-stopped"


def _serve(folder: Path, port: int, *extra: str) -> subprocess.Popen:
    import serve  # tools/hub_mirror, on sys.path through the hub fixture

    log = open(folder / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, str(SERVE), "run", "--dir", str(folder), "--port", str(port), *extra],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: proc.poll() is not None or serve.answers(f"http://127.0.0.1:{port}", timeout=1.0), timeout=90,
               what="the test's own hub")
    assert proc.poll() is None, (folder / "server.log").read_text()
    return proc


def stop_and_rerun(hub, root: Path) -> dict:
    """The first sweep, stopped by the hub's fault; then the same command with the hub back."""
    folder = root / "hub"  # the server's config and logs; its repositories: the session's built ones
    models = folder / "mirrors" / "models" / "glu-ray-test"
    models.mkdir(parents=True)
    for repo_id in (CACHED, UNCACHED):  # one built repository under two ids: a second model, no second build
        (models / repo_id.split("/")[1]).symlink_to(HUB_DIR / "mirrors" / "models" / CACHED)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in hub.env(endpoint=endpoint, HF_HOME=str(root / "hf-home"), HOME=str(root / "home"),
                                   PYTHONUNBUFFERED="1").items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}  # a fresh local Ray, as a user's
    cmd = [sys.executable, str(REPO / "sweeps" / "full_grid.py"), "--preset", "tiny", "--models", f"{CACHED},{UNCACHED}",
           "--suite", "tiny", "--metrics", "maw", "--pruning-pcts", "50", "--tasks", "tiny_mc", "--limit", "4",
           "--batch-size", "4", "--threshold", "1e6", "--storage", str(root / "runs"), "--experiment", EXPERIMENT,
           # One trial at a time: a trial that asks the hub and finds it up, then loses it while loading,
           # waits out huggingface_hub's retries (~23 s a file, minutes for a model's optional-file probes)
           # before it falls back to the cache. That is what a user meets if the hub dies mid-load; here it
           # made the test take 1-4 minutes depending on which model's trial started first.
           "--max-concurrent", "1"]
    exit_on = rf"^/{UNCACHED}/resolve/[^/]+/(?!config\.json$)"
    server = _serve(folder, port, "--exit-on", exit_on)
    try:
        warm = subprocess.run([sys.executable, "-c", f"from huggingface_hub import snapshot_download; "
                               f"snapshot_download({CACHED!r})"], env=env, capture_output=True, text=True, timeout=120)
        assert warm.returncode == 0, warm.stderr
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
        server_code = server.wait(timeout=30)  # it stopped at the fault, not before or never
    finally:
        kill_tree(server)
    ledger = Ledger(root / "runs" / EXPERIMENT / "ledger.jsonl")
    at_stop = ledger.events()
    server = _serve(folder, port)  # the hub back, on the same endpoint
    try:
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    finally:
        kill_tree(server)
    return dict(first=first, second=second, server_code=server_code, endpoint=endpoint, ledger=ledger, at_stop=at_stop,
                server_log=(folder / "server.log").read_text(), uri=f"sqlite:///{root / 'runs' / EXPERIMENT / 'mlflow.db'}")
