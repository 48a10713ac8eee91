"""--widths auto: the widths where each (model, metric) still measures, found from stage 0 alone.

Instead of fixed percentages (which on a fragile model put most trials past collapse), each
(model, metric) gets the integer widths whose stage-0 word-perplexity ratio to the model's
baseline is about each target (1.25x ... 10x by default). Stage 0 is cheap (the ranking is
cached per (model, metric): rank once, prune many, fast perplexity), so a bisection per target
costs a handful of stage-0 trials; full evaluation then runs only at the widths found.

``Bisection`` is the pure logic (no Ray): perplexity rises as the width falls, monotonically
enough that bisecting the integer width between a width known above the target and one known
below converges. It is deterministic: the targets are taken in ascending order, each starts from
the tightest bracket every measurement so far gives, probes ``(lo + hi) // 2`` (or, while the
steps left cannot narrow a bracket that spans over 4x in neurons pruned to one neuron, the
geometric middle of the neurons pruned: ``Bisection._middle``), and stops when the bracket is one
neuron wide or after ``max_steps`` probes. A target the narrowest width
searched (``max_pct`` pruned) does not reach is reported unreachable, never looped on. The
Tune side (a Searcher proposing these probes) is glu_ray/sweep/width_searcher.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from glu_ray.errors import GluRayError
from glu_ray.pruning.widths import TargetWidth, resolve_width

DEFAULT_TARGETS = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True)
class WidthSearch:
    """What --widths auto searches for: stage-0 ratios to the baseline, and how hard."""

    targets: tuple[float, ...] = DEFAULT_TARGETS
    max_steps: int = 8  # stage-0 probes per target at most (width resolution ~ I / 2**max_steps)
    max_pct: float = 95.0  # the narrowest width searched: this percentage pruned

    def __post_init__(self) -> None:
        if not self.targets:
            raise GluRayError("--width-targets got no numbers")
        if any(not (isinstance(t, (int, float)) and t > 1) for t in self.targets):
            raise GluRayError(f"--width-targets must be perplexity ratios above 1 (got {', '.join(map(str, self.targets))})")
        if self.max_steps < 1:
            raise GluRayError(f"width search: max_steps must be at least 1 (got {self.max_steps})")
        if not 0 < self.max_pct < 100:
            raise GluRayError(f"width search: max_pct must be in (0, 100) (got {self.max_pct})")
        object.__setattr__(self, "targets", tuple(sorted(set(float(t) for t in self.targets))))

    def narrowest(self, intermediate: int, hidden: int) -> int:
        """The smallest width searched, rounded as the grid rounds a percentage."""
        return resolve_width(TargetWidth(pruning_pct=self.max_pct), intermediate, hidden).width


@dataclass(frozen=True)
class Found:
    """How one target's width was chosen: ``width`` None when the target was never reached."""

    target: float
    width: int | None
    ratio: float  # the stage-0 ratio measured at ``width`` (unreachable: at the narrowest width)
    steps: int  # stage-0 probes this target took (measurements reused from earlier targets are free)

    @property
    def reachable(self) -> bool:
        return self.width is not None


@dataclass
class Bisection:
    """Integer-width bisection for each target in turn; feed it with ``record`` what ``next_width`` asks."""

    intermediate: int  # the unpruned width: ratio 1 by definition, never probed
    narrowest: int
    targets: tuple[float, ...]
    max_steps: int = 8
    known: dict[int, float] = field(default_factory=dict)  # width -> stage-0 ratio to the baseline
    found: list[Found] = field(default_factory=list)
    failed: str | None = None  # a probe that gave no ratio: the search stops, its remaining targets unfound
    _steps: int = 0

    @property
    def done(self) -> bool:
        return self.failed is not None or len(self.found) == len(self.targets)

    def next_width(self) -> int | None:
        """The width to measure next, or None when every target is settled."""
        while not self.done:
            width = self._probe(self.targets[len(self.found)])
            if width is not None:
                return width
        return None

    def record(self, width: int, ratio: float) -> None:
        if not (isinstance(ratio, (int, float)) and not math.isnan(ratio)):
            self.failed = f"no stage-0 ratio at width {width}"
            return
        self.known[width] = float(ratio)  # inf (a collapsed model) is a valid "above every target"
        self._steps += 1

    def fail(self, why: str) -> None:
        self.failed = why

    def _probe(self, target: float) -> int | None:
        """The next probe for ``target``, or None after settling it (appended to ``found``)."""
        above = [w for w, r in self.known.items() if r >= target]
        if not above:
            if self.narrowest not in self.known:
                return self.narrowest
            return self._settle(Found(target, None, self.known[self.narrowest], self._steps))
        lo = max(above)
        hi = min((w for w, r in self.known.items() if r < target and w > lo), default=self.intermediate)
        if hi - lo > 1 and self._steps < self.max_steps:
            return self._middle(lo, hi)
        closest = min((w for w in (lo, hi) if w in self.known),  # ties: the narrower (lo), as listed
                      key=lambda w: abs(math.log(self.known[w] / target)))
        return self._settle(Found(target, closest, self.known[closest], self._steps))

    def _middle(self, lo: int, hi: int) -> int:
        """Halve the width bracket; but where the probes left cannot bring it to one neuron and it
        spans more than 4x in neurons pruned, take the geometric middle of the neurons pruned. A
        fragile model's targets can lie within its first few neurons (SmolLM2: MAW doubles the
        perplexity at 7 of 1,536), which halving a 768-neuron bracket does not reach in 6 probes."""
        fewer, more = max(self.intermediate - hi, 1), self.intermediate - lo  # neurons pruned at hi, lo
        if hi - lo > 2 ** (self.max_steps - self._steps) and more > 4 * fewer:
            return min(max(self.intermediate - round(math.sqrt(fewer * more)), lo + 1), hi - 1)
        return (lo + hi) // 2

    def _settle(self, found: Found) -> None:
        self.found.append(found)
        self._steps = 0
        return None
