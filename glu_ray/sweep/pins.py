"""Each hub model's commit, pinned once per experiment: every trial of a sweep, and of its reruns,
loads the same weights even when the model's branch moves on the hub in between.

Before any trial, the driver resolves each hub model's revision (none: ``main``) to the commit it
names: online at the endpoint in use, offline from the Hugging Face cache (glu_ray/hub_repos.py).
The first run records it in the ledger (kind ``revision``); a rerun keeps the recorded commit and
says so when the branch has moved. Trials load ``revision=<commit>``, MLflow's ``revision``
param. A commit asked for is used as it is; a local folder has none.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from glu_ray.hub_repos import commit_of, endpoint, is_hub_id
from glu_ray.sweep.grid import SweepGrid
from glu_ray.trials.ledger import REVISION, Event, Ledger
from glu_ray.vocab import TrialStatus

log = logging.getLogger("glu_ray")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Pin:
    model: str  # hub id
    asked: str  # the branch or tag asked for ("main" where none was)
    commit: str

    @property
    def key(self) -> str:
        return f"{self.model}@{self.asked}"


def pin_models(grid: SweepGrid, ledger_path: Path) -> tuple[SweepGrid, tuple[Pin, ...]]:
    """(the grid with each hub model at a commit, the pins the ledger does not hold yet). A model
    whose commit neither the ledger nor the hub nor the cache knows is left as asked: loading it
    fails with its own line."""
    kept = kept_pins(ledger_path)
    models, new = [], {}
    for spec in grid.models:
        if not is_hub_id(spec.source) or COMMIT.match(spec.revision or ""):
            models.append(spec)
            continue
        asked = spec.revision or "main"
        now = commit_of(spec.source, spec.revision)
        commit = kept.get(f"{spec.source}@{asked}")
        if commit is None and now is not None:
            commit = now
            new.setdefault(f"{spec.source}@{asked}", Pin(spec.source, asked, now))
        elif commit is not None and now not in (None, commit):
            log.warning("%s: %s is at %s on %s now; this experiment keeps %s, its first run's (a new "
                        "--experiment evaluates the new one)", spec.source, asked, now[:10], endpoint(), commit[:10])
        models.append(replace(spec, revision=commit) if commit else spec)
    return replace(grid, models=tuple(models)), tuple(new.values())


def kept_pins(ledger_path: Path) -> dict[str, str]:
    """``model@asked`` -> commit, from an earlier run's ledger (read only: no folder is made)."""
    if not ledger_path.is_file():
        return {}
    return {e.key: e.data["commit"] for e in Ledger(ledger_path).events() if e.kind == REVISION}


def record_pins(pins: tuple[Pin, ...], ledger: Ledger) -> None:
    for pin in pins:
        ledger.append(Event(pin.key, REVISION, None, TrialStatus.COMPLETED, {"commit": pin.commit}))
