"""The sweep's schedule, simulated: when each trial starts and ends on a given set of devices.

What it models is what Ray Tune and Ray do with the sweep's trials: each trial asks for a share
of one device (a fraction of a GPU, or some CPUs of a machine) and never spans two; trials are
offered in order, and whenever one ends, the first waiting trials that fit start (Tune's FIFO
scheduler picks the first pending trial with resources, not strictly the head of the queue);
a device holds trials whose shares sum to at most 1 (a GPU) or its CPU count. ``max_concurrent``
caps running trials, as ``--max-concurrent`` does. Phases run one after another: the sweep's
reference stage 0 first, then everything else.

The bound every schedule is measured against: max(device-seconds / devices, longest trial).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

_EPS = 1e-9  # shares are sums of 1/8, 1/4, ...: exact in floats, but a CPU share may not be


@dataclass(frozen=True)
class Job:
    key: str
    seconds: float  # wall-clock while running at its share
    share: float  # of one device: a GPU fraction, or CPUs on a machine of `capacity` CPUs


@dataclass(frozen=True)
class Schedule:
    starts: dict[str, float]
    ends: dict[str, float]
    devices: int
    capacity: float  # of each device

    @property
    def makespan(self) -> float:
        return max(self.ends.values(), default=0.0)

    def order(self) -> list[str]:
        """Keys in the order they started (ties: the order they were offered)."""
        return sorted(self.starts, key=lambda k: self.starts[k])


def simulate(phases: Sequence[Sequence[Job]], devices: int, capacity: float = 1.0,
             max_concurrent: int | None = None) -> Schedule:
    """List-schedule each phase's jobs in their given order; a phase starts when the last ended."""
    if devices < 1:
        raise ValueError(f"need at least one device (got {devices})")
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    now = 0.0
    for jobs in phases:
        now = _phase(list(jobs), devices, capacity, max_concurrent, now, starts, ends)
    return Schedule(starts, ends, devices, capacity)


def _phase(jobs, devices, capacity, max_concurrent, now, starts, ends) -> float:
    for job in jobs:
        if job.share > capacity + _EPS:
            raise ValueError(f"trial {job.key} needs {job.share:g} of a device of {capacity:g}")
    free = [capacity] * devices
    running: list[tuple[float, int, str, int]] = []  # (end, tie, key, device)
    pending = list(jobs)
    tie = 0
    while pending or running:
        started = []
        for job in pending:
            if max_concurrent is not None and len(running) >= max_concurrent:
                break
            device = next((d for d in range(devices) if free[d] + _EPS >= job.share), None)
            if device is None:
                continue
            free[device] -= job.share
            starts[job.key], ends[job.key] = now, now + job.seconds
            heapq.heappush(running, (now + job.seconds, tie, job.key, device))
            tie += 1
            started.append(job)
        pending = [j for j in pending if j not in started]
        if not running:
            break
        now, _, key, device = heapq.heappop(running)
        free[device] += next(j.share for j in jobs if j.key == key)
        while running and running[0][0] <= now + _EPS:  # everything that ends at the same moment
            _, _, other, d = heapq.heappop(running)
            free[d] += next(j.share for j in jobs if j.key == other)
    return now


def lower_bound(jobs: Sequence[Job], devices: int, capacity: float = 1.0) -> float:
    """No schedule beats max(device-seconds / devices, the longest job)."""
    work = sum(j.seconds * j.share / capacity for j in jobs)
    return max(work / devices, max((j.seconds for j in jobs), default=0.0))
