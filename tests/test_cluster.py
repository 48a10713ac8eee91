"""The sweep on two real Ray nodes of this machine, loopback only (tests/clusterkit.py runs them).

One run of the kit per session (~2 min on a quiet 2-CPU machine, mostly Ray's start-up and health
checks): the sweep script joining through RAY_ADDRESS, trials on both nodes, fractional packing, a
worker node killed mid-trial with and without a retry, and a node that cannot see the storage. The
kit runs in a network namespace of its own that has only ``lo`` (``unshare --net``: root, as here
and in CI), so a second node can join without Ray advertising any other address. conftest.py starts
it in the background when the session starts, so that waiting overlaps the tests before this module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from faultkit import assert_mlflow_matches_ledger, trial_runs
from glu_ray.trials.ledger import Ledger
from glu_ray.vocab import NODE_ID, NODE_TAG

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(cluster_kit):
    """The kit's scenarios: conftest.cluster_kit started it with the session; this waits for it."""
    if isinstance(cluster_kit, str):
        pytest.skip(f"two-node tests: {cluster_kit}")
    proc, out = cluster_kit
    try:
        proc.wait(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    report = out / "scenarios.json"
    assert proc.returncode == 0 and report.is_file(), (out / "kit.err").read_text()[-4000:]
    return json.loads(report.read_text())


def _runs(scenario: dict, name: str) -> dict:
    return {r.data.tags["glu_ray.trial_key"]: r for r in trial_runs(scenario["uri"], name)}


def _overlap(intervals) -> int:
    """Most intervals open at one moment."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_the_cluster_stayed_on_loopback(cluster):
    assert cluster["address"].startswith("127.0.0.1:")


def test_the_sweep_script_joins_the_cluster_through_ray_address_and_prints_only_its_own_lines(cluster):
    packing = cluster["packing"]
    said = packing["stdout"] + packing["stderr"]
    assert packing["returncode"] == 0, said[-3000:]
    assert cluster["address"] in said  # it joined the cluster started here
    # What a researcher sees: one line per trial event, never Ray Tune's per-trial configuration box,
    # nor its experiment box, TensorBoard hint or TensorBoard logger warnings ...
    assert "started with configuration" not in said
    assert "Configuration for experiment" not in said and "tensorboard" not in said.lower(), said[-3000:]
    # ... nor its result grid's warning about the stage-0-only reference runs (the ledger has them).
    assert "Failed to fetch metrics" not in said, said[-3000:]
    assert "stage 0" in packing["stdout"] and "completed" in packing["stdout"], packing["stdout"][-3000:]


def test_trials_land_on_both_nodes_packed_by_their_gpu_fraction(cluster):
    packing = cluster["packing"]
    assert packing["finished"] and set(packing["status"].values()) == {"completed"}
    assert len(packing["keys"]) == 4  # the baseline and three metrics at 50%
    runs = _runs(packing, "packing")
    assert set(runs) == set(packing["keys"])
    where = {k: r.data.tags[NODE_TAG] for k, r in runs.items()}
    nodes = packing["nodes"]
    assert len(packing["met"]) == 3  # the pruned trials met after stage 0 (clusterkit.install_barrier): all at once
    assert set(where.values()) == {nodes["head"], nodes["w1"]}, where  # both nodes ran trials
    # Half a logical GPU each, one GPU per node: at most two at once on a node, and two did share one.
    # (MLflow's start and end are the driver's callbacks: a second of slack either way.)
    per_node = {n: [(r.info.start_time / 1000, r.info.end_time / 1000) for k, r in runs.items() if where[k] == n]
                for n in set(where.values())}
    assert max(_overlap([(a + 1, b - 1) for a, b in iv]) for iv in per_node.values()) == 2
    assert all(_overlap([(a + 1, b - 1) for a, b in iv]) <= 2 for iv in per_node.values())
    assert_mlflow_matches_ledger(packing["uri"], "packing", Path(packing["ledger"]), packing["keys"])


def test_a_killed_worker_node_with_one_retry_reruns_the_trial_on_the_survivor(cluster):
    retry = cluster["retry"]
    victim = retry["killed"]["key"]  # its trial had reported stage 0 on the worker when its raylet died
    assert retry["finished"] and set(retry["status"].values()) == {"completed"}
    events = Ledger(retry["ledger"]).events()
    attempts = [e.data[NODE_ID] for e in events if e.key == victim and e.kind == "result" and e.stage == 0]
    assert attempts == [retry["worker"], retry["head"]]  # the first attempt died with its node
    assert Counter(e.key for e in events if e.kind == "end") == Counter(retry["keys"])  # one end each
    assert _runs(retry, "retry")[victim].data.tags[NODE_TAG] == retry["head"]
    assert_mlflow_matches_ledger(retry["uri"], "retry", Path(retry["ledger"]), retry["keys"])


def test_a_killed_worker_node_without_retries_fails_the_trial_and_a_rerun_completes_exactly_it(cluster):
    case = cluster["no_retry"]
    first, rerun, victim = case["first"], case["rerun"], case["killed"]["key"]
    assert first["status"][victim] == "failed"
    assert {k: s for k, s in first["status"].items() if k != victim} == {k: "completed" for k in first["keys"] if k != victim}
    assert rerun["finished"] and set(rerun["status"].values()) == {"completed"}
    ends = Counter(e.key for e in Ledger(rerun["ledger"]).events() if e.kind == "end")
    assert ends == Counter(first["keys"]) + Counter([victim])  # the rerun ran that trial and nothing else
    assert_mlflow_matches_ledger(rerun["uri"], "no-retry", Path(rerun["ledger"]), rerun["keys"])


def test_a_node_that_cannot_see_the_storage_is_one_line_naming_it(cluster):
    unseen = cluster["unseen"]
    error = unseen["error"]
    assert error and "\n" not in error
    assert unseen["node"] in error and unseen["storage"] in error and "internal error" not in error
