"""The same sweep command started twice at once, as from two terminals: one driver runs the
experiment, the other exits at once with one line naming it; nothing is run or logged twice."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import pytest

from faultkit import REPO, assert_mlflow_matches_ledger, kill_tree, offline_env, tiny_model
from glu_ray.trials.ledger import Ledger

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    model, text = tiny_model(tmp_path_factory.getbasetemp())
    storage = tmp_path_factory.mktemp("twice")
    cmd = [sys.executable, str(REPO / "sweeps" / "full_grid.py"), "--preset", "tiny", "--models", str(model),
           "--suite", "tiny", "--metrics", "maw", "--pruning-pcts", "50", "--tasks", "tiny_mc", "--limit", "4",
           "--batch-size", "4", "--ppl-text", str(text), "--threshold", "1e6", "--storage", str(storage),
           "--experiment", "twice"]
    procs = [subprocess.Popen(cmd, env=offline_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO, start_new_session=True) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:
            kill_tree(p)
    return dict(procs=procs, outputs=outputs, storage=storage, ledger=storage / "twice" / "ledger.jsonl",
                uri=f"sqlite:///{storage / 'twice' / 'mlflow.db'}")


def test_one_driver_runs_and_the_other_exits_naming_it(twice):
    codes = sorted(p.returncode for p in twice["procs"])
    assert codes == [0, 2], [o[1][-2000:] for o in twice["outputs"]]
    winner, loser = sorted(range(2), key=lambda i: twice["procs"][i].returncode)
    lines = [ln for ln in twice["outputs"][loser][1].splitlines() if ln.strip()]
    assert len(lines) == 1, twice["outputs"][loser][1]
    assert re.fullmatch(rf"error: experiment 'twice' is already being run by another driver \(host \S+, "
                        rf"pid {twice['procs'][winner].pid}, since \d{{4}}-\d\d-\d\dT[\d:]+Z\); .*driver\.lock\)", lines[0])


def test_nothing_is_run_or_logged_twice(twice):
    from mlflow.tracking import MlflowClient

    ledger = Ledger(twice["ledger"])
    events = ledger.events()
    assert Counter(e.key for e in events if e.kind == "end") == Counter({k: 1 for k in ledger.finished()})
    assert len(ledger.finished()) == 2 and set(ledger.finished().values()) == {"completed"}
    assert_mlflow_matches_ledger(twice["uri"], "twice", twice["ledger"], list(ledger.finished()))
    client = MlflowClient(twice["uri"])
    exp = client.get_experiment_by_name("twice")
    assert len(client.search_runs([exp.experiment_id], "tags.`glu_ray.role` = 'sweep'")) == 1
