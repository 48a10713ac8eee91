"""A hub model's commit, pinned once per experiment (glu_ray/sweep/pins.py), against the local hub:
online the commit the hub serves, offline the cache's, and a rerun keeps its ledger's even when the
branch has moved (it says so). Each case runs in a subprocess: the test session itself is offline."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import HUB_DIR
from glu_ray.trials.ledger import REVISION, Event, Ledger

MODEL = "glu-ray-test/stories260K"
PIN = """
import json, sys
from pathlib import Path
from glu_ray.pruning.widths import TargetWidth
from glu_ray.sweep.grid import ModelSpec, SweepGrid
from glu_ray.sweep.pins import pin_models
grid = SweepGrid(tuple(ModelSpec(m, "tiny") for m in sys.argv[1:3]), ("maw",), (TargetWidth(pruning_pct=50),))
pinned, new = pin_models(grid, Path(sys.argv[3]))
print(json.dumps({"revisions": [m.revision for m in pinned.models], "new": [[p.key, p.commit] for p in new]}))
"""


def _pin(hub, ledger, home, *, local, **env):
    run = subprocess.run([sys.executable, "-c", PIN, MODEL, str(local), str(ledger)], capture_output=True, text=True,
                         timeout=120, env=hub.env(HF_HOME=str(home), **env))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout), run.stderr


def test_a_hub_model_is_pinned_at_the_hubs_commit_and_a_rerun_keeps_its_ledgers(hub, tmp_path, tiny_model_dir):
    head = subprocess.run(["git", "-C", str(HUB_DIR / "mirrors" / "models" / MODEL), "rev-parse", "main"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ledger = tmp_path / "exp" / "ledger.jsonl"
    got, _ = _pin(hub, ledger, tmp_path / "hf", local=tiny_model_dir)
    assert got == {"revisions": [head, None], "new": [[f"{MODEL}@main", head]]}  # a local folder has no commit
    assert not ledger.parent.exists()  # read only: the driver records the pin under its lock

    older = "0" * 40  # what an earlier run of the experiment pinned, before the branch moved
    Ledger(ledger).append(Event(f"{MODEL}@main", REVISION, None, "completed", {"commit": older}))
    got, err = _pin(hub, ledger, tmp_path / "hf", local=tiny_model_dir)
    assert got == {"revisions": [older, None], "new": []}
    assert f"main is at {head[:10]} on {hub.endpoint} now; this experiment keeps {older[:10]}" in err


def test_offline_the_commit_comes_from_the_cache(hub, tmp_path, tiny_model_dir):
    head = subprocess.run([sys.executable, "-c", f"from huggingface_hub import snapshot_download; "
                           f"print(snapshot_download({MODEL!r}).rsplit('/', 1)[1])"], capture_output=True, text=True,
                          timeout=120, env=hub.env(HF_HOME=str(tmp_path / "hf")), check=True).stdout.strip()
    offline = {"HF_HUB_OFFLINE": "1"}
    got, _ = _pin(hub, tmp_path / "a.jsonl", tmp_path / "hf", local=tiny_model_dir, **offline)
    assert got["revisions"] == [head, None]
    got, _ = _pin(hub, tmp_path / "b.jsonl", tmp_path / "empty-hf", local=tiny_model_dir, **offline)
    assert got == {"revisions": [None, None], "new": []}  # uncached: left as asked, the load says why
