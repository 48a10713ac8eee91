"""The sweep's own record of every trial result: an append-only JSONL file next to Ray's storage.

It is written by the driver before anything is sent to MLflow, fsync'd line by line, so a killed
driver or an unreachable tracking server never loses a finished result. A rerun reads it to skip
trials that already finished, and MLflow is (re)synced from it idempotently.

Kinds of event: ``result`` (a trial's stage), ``end`` (its final status), and ``reference``: the
stage 0 of a trial measured alone before the sweep, for the trials that read it (sweep/plan.py).
A reference is not a trial result: ``results`` and ``finished`` never see it (nor MLflow).
--widths auto adds ``width_search`` (a stage-0 probe of the width search, keyed as the trial at
that width) and ``width_choice`` (a target's chosen width): not trial results either, nor is
``pilot`` (--items-by-power: a baseline's per-task score and cost, measured before the sweep), nor
``revision`` (the commit each hub model is pinned at for the experiment).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from glu_ray.vocab import STATUS, TrialStatus


REFERENCE = "reference"  # an event kind: a reference trial's stage 0, measured before the sweep
SEARCH = "width_search"  # a stage-0 probe of --widths auto (glu_ray/sweep/width_search.py)
CHOICE = "width_choice"  # the width --widths auto chose for one (model, metric, target ratio)
PILOT = "pilot"  # --items-by-power: a baseline's pilot, per task score and cost (glu_ray/sweep/items.py)
REVISION = "revision"  # the commit a hub model's branch was pinned at, keyed model@branch (glu_ray/sweep/pins.py)
NOT_RESULTS = (REFERENCE, SEARCH, CHOICE, PILOT, REVISION)


def _clean(value):
    # JSON has no NaN/inf: keep them readable and round-trippable as strings.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _restore(value):
    return float(value) if value in ("nan", "inf", "-inf") else value


@dataclass(frozen=True)
class Event:
    key: str  # TrialConfig.key
    kind: str  # "result" (one per stage), "end", or REFERENCE
    stage: int | None
    status: TrialStatus
    data: dict  # metrics and identity for results; {"error": ...} for failed ends

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", TrialStatus(self.status))  # a plain string is accepted


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tail_checked = False  # readers never write: only the first append checks the tail

    def _end_torn_line(self) -> None:
        """A driver killed mid-write leaves a line without its newline: end it, or the next
        append would be glued onto it and lost with it."""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
                    f.flush()
                    os.fsync(f.fileno())

    def append(self, event: Event) -> None:
        line = json.dumps({"key": event.key, "kind": event.kind, "stage": event.stage, "status": event.status.value,
                           "data": {k: _clean(v) for k, v in event.data.items()}})
        if not self._tail_checked:
            self._end_torn_line()
            self._tail_checked = True
        with open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def events(self) -> list[Event]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write: the trial simply reruns
            out.append(Event(d["key"], d["kind"], d["stage"], d["status"], {k: _restore(v) for k, v in d["data"].items()}))
        return out

    def finished(self) -> dict[str, TrialStatus]:
        """Trial key -> final status, for trials that completed or were stopped."""
        return {e.key: e.status for e in self.events() if e.kind == "end" and e.status.final}

    def results(self) -> dict[str, dict]:
        """Trial key -> merged metrics of its latest attempt, plus its status (last one wins)."""
        rows: dict[str, dict] = {}
        for e in self.events():
            if e.kind in NOT_RESULTS:
                continue
            if e.kind == "result" and e.stage == 0:
                rows[e.key] = {}  # a new attempt starts at stage 0: forget a failed one's stages
            row = rows.setdefault(e.key, {})
            row.update(e.data)
            row[STATUS] = e.status
        return rows

    def stage0(self) -> dict[str, dict]:
        """Trial key -> its latest stage-0 data, from a reference run or the trial itself (one
        that failed later still measured it): what the trials that compare with it read."""
        return {e.key: e.data for e in self.events() if e.stage == 0 and e.kind in ("result", REFERENCE)}

    def searched(self) -> dict[str, dict]:
        """Trial key -> stage-0 data of the width search's probe at that width."""
        return {e.key: e.data for e in self.events() if e.kind == SEARCH}

    def choices(self) -> list[dict]:
        """The width choices recorded so far, in order."""
        return [e.data for e in self.events() if e.kind == CHOICE]
