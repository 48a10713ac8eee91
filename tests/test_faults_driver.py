"""The sweep command killed with SIGKILL mid-sweep, then rerun: nothing lost, nothing run twice.

The first attempt of ``sweeps/full_grid.py`` runs in its own process group and is killed (driver,
Ray and trial workers) once the ledger holds two finished trials. The same command is rerun,
under ``strace -e trace=connect`` when strace is installed, with credentials in its environment.
The rerun must finish every trial, never rerun a finished one, leave one MLflow child run per trial
with every metric, connect only to loopback, and write the credentials nowhere: not in the storage
folder, and not in Ray's session files (its temp dir, put under the test's folder with RAY_TMPDIR).
Under CI (``CI`` set) strace must be there: .ci/run installs it (``make strace``). The two attempts
(tests/killkit.py) start in the background with the session (conftest).
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from faultkit import assert_mlflow_matches_ledger
from glu_ray.trials.ledger import Ledger
from killkit import N_TRIALS, SECRETS

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture(scope="module")
def killed_and_rerun(killed_early):
    r = killed_early.result()  # killkit.kill_and_rerun, started with the session (conftest)
    yield r
    shutil.rmtree(r["ray_tmp"], ignore_errors=True)


def test_rerun_completes_every_trial(killed_and_rerun):
    r = killed_and_rerun
    assert r["rerun"].returncode == 0, r["rerun"].stderr_text[-3000:]
    finished = Ledger(r["ledger"]).finished()
    assert len(finished) == N_TRIALS and set(finished.values()) == {"completed"}


def test_no_finished_trial_is_rerun(killed_and_rerun):
    r = killed_and_rerun
    events = Ledger(r["ledger"]).events()
    assert Counter(e.key for e in events if e.kind == "end") == Counter({k: 1 for k in Ledger(r["ledger"]).finished()})
    after_kill = events[len(r["at_kill"]):]
    assert not {e.key for e in after_kill} & r["done_at_kill"]


def test_one_child_run_per_trial_and_no_metric_lost(killed_and_rerun):
    r = killed_and_rerun
    keys = list(Ledger(r["ledger"]).finished())
    assert_mlflow_matches_ledger(r["uri"], "killed", r["ledger"], keys)


def test_credentials_are_written_nowhere(killed_and_rerun):
    """HF/MLflow tokens in the environment: absent from params, tags, artifacts, ledger, Ray files, logs."""
    from mlflow.tracking import MlflowClient

    r = killed_and_rerun
    client = MlflowClient(r["uri"])
    exp = client.get_experiment_by_name("killed")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert runs
    blob = "\n".join(f"{k}={v}" for run in runs for d in (run.data.params, run.data.tags) for k, v in d.items())
    texts = [blob]
    ray_logs = [p for p in (r["ray_tmp"] / "ray").glob("session_*/logs/*") if p.parts[-3] != "session_latest"]
    assert len({p.parts[-3] for p in ray_logs}) == 2 and any(p.name.startswith("worker-") for p in ray_logs), \
        "Ray's session logs (both runs, trial workers included) are not under the test's folder"
    for path in r["storage"].rglob("*"):  # Ray's temp dir is in there
        if path.is_file() and path.suffix not in (".safetensors", ".pt", ".db", ".trace") and path.stat().st_size < 20e6:
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    texts.append(Path(r["uri"].removeprefix("sqlite:///")).read_bytes().decode("latin-1"))
    for secret in SECRETS.values():
        assert not any(secret in t for t in texts), f"{secret[:6]}... leaked"


def test_every_network_connect_goes_to_loopback(killed_and_rerun):
    r = killed_and_rerun
    if r["trace"] is None:
        why = "strace unavailable (or ptrace not permitted)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run this check (.ci/run installs strace with `make strace`)")
        pytest.skip(why)
    lines = [ln for ln in r["trace"].read_text().splitlines() if "connect(" in ln]
    inet = [ln for ln in lines if "AF_INET" in ln]
    assert inet, "no TCP/UDP connect traced at all: strace did not follow the sweep"
    addrs = Counter()
    for ln in inet:
        m = re.search(r'inet_addr\("([^"]+)"\)', ln) or re.search(r'inet_pton\(AF_INET6, "([^"]+)"', ln)
        assert m, ln
        addrs[m.group(1)] += 1
    outside = {a: n for a, n in addrs.items() if a not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")}
    assert not outside, f"connects outside loopback: {outside}"
