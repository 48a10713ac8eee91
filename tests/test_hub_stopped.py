"""The hub stops mid-sweep: each trial that needed it fails with one line, the sweep goes on, and the
same command rerun once the hub answers again runs exactly those trials.

The test runs its own server (tools/hub_mirror/serve.py, on loopback) over the built mirror, never
the session's, and stops it at a known point rather than at a moment guessed by timing: ``--exit-on``
ends the server process, unanswered, at the first request for a file of the second model other than
its config.json. The driver reads only config.json before Ray starts, so that request is the second
model's first trial loading it. Two hub models: ``glu-ray-test/stories260K``, already in the sweep's
Hugging Face cache (as after an earlier run), and the same repository under a second id, not cached.
The two sweeps (tests/hubstopkit.py) start in the background with the session (conftest).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from faultkit import assert_mlflow_matches_ledger
from hubstopkit import CACHED, UNCACHED, EXPERIMENT

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture(scope="module")
def stopped_and_rerun(hub, hub_stopped_early):
    return hub_stopped_early.result()  # hubstopkit.stop_and_rerun, started with the session (conftest)


def _ends(events) -> dict[str, tuple[str, str]]:
    return {e.key: (e.status, e.data.get("error", "")) for e in events if e.kind == "end"}


def test_the_hub_stopped_where_the_fault_says(stopped_and_rerun):
    r = stopped_and_rerun
    assert r["server_code"] == 3, r["server_log"]
    assert re.search(rf"exiting at \w+ /{UNCACHED}/resolve/\w+/(?!config\.json)\S+ ", r["server_log"]), r["server_log"]


def test_each_trial_that_needed_the_hub_fails_with_one_line_and_the_sweep_goes_on(stopped_and_rerun):
    r = stopped_and_rerun
    first = r["first"]
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]  # rerun to complete, as for failures
    assert "Traceback" not in first.stdout + first.stderr
    why = (rf"cannot reach the Hugging Face hub at {re.escape(r['endpoint'])} \([^)]+\) and {UNCACHED} is not all in "
           "the local cache: rerun the same command when the hub answers")
    # The uncached model's baseline: its reference run, then its trial, each one line; its pruned trial,
    # which reads the baseline's stage 0, waits for the rerun (one line).
    assert len(re.findall(rf"^reference stories260K-b/baseline failed before its stage 0 \({why}\): what reads it "
                          "waits for a rerun$", first.stderr, re.M)) == 1, first.stderr
    assert len(re.findall(rf"^\[\d/3\] stories260K-b +baseline native +failed: {why}$", first.stdout, re.M)) == 1, \
        first.stdout
    assert re.search(r"^1 pruned trial\(s\) not started: .*\(stories260K-b\); rerun the same command$", first.stderr, re.M)
    assert re.search(r"^1 trial\(s\) failed and 1 not started \(their reference failed\) .*; rerun the same command "
                     "to retry only those$", first.stdout, re.M), first.stdout  # no "interrupted": nothing was
    ends = _ends(r["at_stop"])
    # The cached model's trials ran on after the hub stopped (they started after its last answer).
    assert {k: s for k, (s, _) in ends.items() if k.startswith(f"{CACHED}|")} == \
        {f"{CACHED}|baseline|172": "completed", f"{CACHED}|maw|86": "completed"}
    status, error = ends[f"{UNCACHED}|baseline|172"]
    assert status == "failed" and re.fullmatch(rf"glu_ray\.errors\.GluRayError: {why}", error), error
    assert f"{UNCACHED}|maw|86" not in ends


def test_the_rerun_runs_exactly_the_trials_that_failed(stopped_and_rerun):
    r = stopped_and_rerun
    second = r["second"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    events = r["ledger"].events()
    rerun = events[len(r["at_stop"]):]
    assert {e.key for e in rerun} == {f"{UNCACHED}|baseline|172", f"{UNCACHED}|maw|86"}
    trials = [f"{m}|{t}" for m in (CACHED, UNCACHED) for t in ("baseline|172", "maw|86")]
    # Nothing completed twice, nothing lost: one failed end (the first sweep's) and one completed end per trial.
    assert Counter((e.key, e.status) for e in events if e.kind == "end") == \
        Counter({(f"{UNCACHED}|baseline|172", "failed"): 1, **{(k, "completed"): 1 for k in trials}})
    assert_mlflow_matches_ledger(r["uri"], EXPERIMENT, r["ledger"].path, trials)


def test_every_trial_loads_the_commit_its_first_run_pinned(stopped_and_rerun):
    """The driver pins each hub model's main at the commit the hub serves (the built repository's
    head) before any trial: the ledger records it once, the rerun keeps it, every run's revision is it."""
    import subprocess

    from conftest import HUB_DIR
    from faultkit import trial_runs
    from glu_ray.trials.ledger import REVISION

    r = stopped_and_rerun
    head = subprocess.run(["git", "-C", str(HUB_DIR / "mirrors" / "models" / CACHED), "rev-parse", "main"],
                          capture_output=True, text=True, check=True).stdout.strip()
    pins = [(e.key, e.data["commit"]) for e in r["ledger"].events() if e.kind == REVISION]
    assert sorted(pins) == sorted([(f"{CACHED}@main", head), (f"{UNCACHED}@main", head)])
    assert {run.data.params["revision"] for run in trial_runs(r["uri"], EXPERIMENT)} == {head}
