"""A preset's time promise, and what a slower machine should expect instead.

``make demo`` promises ~10 minutes on 2 CPUs. Its baseline's stage 0 is the first thing that
runs and scales with the machine like the rest of the sweep, so its time, against the time the
preset was sized with, says early how long the whole run will take here.
"""

from __future__ import annotations

from dataclasses import dataclass

SLOWER = 1.5  # past this factor the promise no longer holds and the run says so


@dataclass(frozen=True)
class Budget:
    minutes: float  # what the preset promises on the machine it was sized on
    stage0_seconds: float  # its baseline's stage 0 there (wall seconds)
    machine: str  # that machine, in words

    def check(self, stage0_seconds: float) -> str | None:
        """A one-line warning when this machine ran stage 0 much slower than the reference."""
        factor = stage0_seconds / self.stage0_seconds
        if factor <= SLOWER:
            return None
        return (f"this machine ran the baseline's stage 0 in {stage0_seconds:.0f}s, {factor:.1f}x the "
                f"{self.stage0_seconds:.0f}s of the {self.machine} this run is sized for (busy, or slower): "
                f"expect about {self.minutes * factor:.0f} minutes, not ~{self.minutes:.0f}")
