"""Progress lines from inside running trials to the driver's terminal, across nodes.

Below ``--verbose 2`` trial output is not forwarded (lm-eval's bars and warnings would bury
everything), so a trial's meter lines (glu_ray/evaluation/meter.py) travel through a named Ray
actor that the driver's progress callback creates and drains. Named actors live in the job's
namespace: every trial of this sweep finds it, another driver's sweep never does. Where there is
no such actor (verbose 0, or a trial run outside a sweep) a trial's lines go nowhere.
"""

from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("glu_ray")
ACTOR_NAME = "glu_ray.progress"


class ProgressLog:
    """Lines in arrival order; the driver takes them all at once."""

    def __init__(self):
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def drain(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def create_progress_log():
    """The driver's actor (Ray running): one CPU-less actor, named for the trials to find."""
    import ray  # lazy: only where a sweep runs

    return ray.remote(num_cpus=0)(ProgressLog).options(name=ACTOR_NAME, get_if_exists=True).remote()


def trial_sink(prefix: str) -> Callable[[str], None] | None:
    """A trial's ``emit``: ``prefix line`` to the driver's actor, fire-and-forget; None without one."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        actor = ray.get_actor(ACTOR_NAME)
    except (ImportError, ValueError):  # no sweep driver listening (ValueError: no such actor)
        return None
    return lambda line: actor.add.remote(f"{prefix} {line}")
