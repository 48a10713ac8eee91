"""A sign of life inside a long stage: work done, rate and ETA, one line at a time.

A stage of a trial on a slow CPU runs for minutes (stage 0 of SmolLM2 on an AVX2-only core: about
two), and one forward pass of a batch can itself take half a minute, so a line per batch is not
enough. A ``Meter`` counts what its stage has done and a timer thread emits a line every ``every``
seconds while a phase runs, whatever the batches do; a phase shorter than that prints nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

EVERY_S = 20.0  # at most this long without a line (the promise is ~30 s)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Meter:
    """``with meter.phase("stage 0", total, "tokens"): ... meter.add(n)`` -> lines such as
    ``stage 0: 12,288/23,903 tokens (51%), 410 tokens/s, ETA 28s``, sent to ``emit``."""

    def __init__(self, emit: Callable[[str], None], every: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.emit, self.every, self.clock = emit, every, clock
        self.what, self.unit, self.total, self.done, self.started = "", "", 0, 0, 0.0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.done += n

    def line(self) -> str:
        with self._lock:
            done, total = self.done, self.total
        elapsed = self.clock() - self.started
        text = f"{self.what}: {done:,}/{total:,} {self.unit}"
        if total:
            text += f" ({100 * done / total:.0f}%)"
        if done and elapsed > 0:  # an ETA only once there is a rate to base it on
            rate = done / elapsed
            text += f", {rate:.3g} {self.unit}/s, ETA {_duration(max(total - done, 0) / rate)}"
        else:
            text += f", {_duration(elapsed)} in"
        return text

    @contextmanager
    def phase(self, what: str, total: int, unit: str) -> Iterator["Meter"]:
        with self._lock:
            self.what, self.unit, self.total, self.done, self.started = what, unit, total, 0, self.clock()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.every):
                self.emit(self.line())

        ticker = threading.Thread(target=beat, name="glu-ray-meter", daemon=True)
        ticker.start()
        try:
            yield self
        finally:
            stop.set()
            ticker.join()


@contextmanager
def maybe_phase(meter: Meter | None, what: str, total: int, unit: str) -> Iterator[None]:
    """``meter.phase`` where there is a meter; nothing otherwise (library calls, tests)."""
    if meter is None:
        yield
    else:
        with meter.phase(what, total, unit):
            yield
