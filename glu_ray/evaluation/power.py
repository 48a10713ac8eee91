"""Items per task sized by statistical power: enough to see a given drop from the baseline, within a budget.

A task's accuracy p over n items has stderr sqrt(p (1 - p) / n). A pruned trial differs from the
baseline by d with stderr sqrt(2 p (1 - p) / n) (two independent proportions, both at the
baseline's p: the smaller the drop, the closer the two, so this is the case that needs items).
A drop d is seen at z standard errors when d >= z sqrt(2 p (1 - p) / n), i.e. with
n = ceil(2 z^2 p (1 - p) / d^2) items (p = 0.5, d = 0.05, z = 2: 800).

Under a CPU budget every task gets the same detectable drop, the smallest the budget pays for:
n_i(D) is decreasing in D, so D is found by bisection, each n_i clamped to [floor, its split's
size]. A task also gets the items that show its baseline above chance by z standard errors (the
analysis leaves a task out of the hierarchy by that rule, ``above_chance``): a cheap task with a
small lead is kept at the items its lead needs. A task whose lead its split cannot show, or whose
lead costs more than the budget leaves, is left out: it gets the floor, and its share of the budget
goes to the others.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

Z = 2.0  # standard errors: a drop (or a lead over chance) smaller than this many is noise
FLOOR = 20  # fewest items a task gets: below this an accuracy's stderr is itself unreliable
MIN_LEAD = 0.02  # a lead over chance smaller than this is none, however many items measured it


def items_needed(p: float, drop: float, z: float = Z) -> int:
    """Items to see a drop of ``drop`` from baseline accuracy ``p`` at ``z`` standard errors."""
    if not drop > 0:
        raise ValueError(f"the drop to detect must be > 0, got {drop}")
    return max(1, math.ceil(2 * z * z * p * (1 - p) / (drop * drop)))


def detectable_drop(p: float, n: int, z: float = Z) -> float:
    """The smallest drop from ``p`` that ``n`` items see at ``z`` standard errors."""
    return z * math.sqrt(2 * p * (1 - p) / n)


def above_chance(score: float, chance: float | None, stderr: float | None, z: float = Z) -> bool:
    """The baseline clears chance by more than ``z`` stderrs and MIN_LEAD; a score without a chance
    level (a perplexity) always counts, and a missing stderr counts as none."""
    if chance is None or (isinstance(chance, float) and math.isnan(chance)):
        return True
    se = 0.0 if stderr is None or (isinstance(stderr, float) and math.isnan(stderr)) else stderr
    return score - chance > max(z * se, MIN_LEAD)


@dataclass(frozen=True)
class TaskCost:
    """What a pilot of the baseline measured for one benchmark."""

    name: str
    score: float  # the baseline's accuracy (primary metric)
    chance: float | None  # None: not a proportion (a perplexity): not sized
    seconds_per_item: float  # CPU-seconds per item scored
    max_items: int  # items its split has (lm-eval's count where it ran)
    items_per_unit: int = 1  # items one unit of lm-eval's limit adds: a group's subtasks each get the limit


@dataclass(frozen=True)
class TaskItems:
    name: str
    score: float
    chance: float | None
    items: int  # items scored (a group: over all its subtasks)
    limit: int | None  # what lm-eval's limit is set to (per subtask for a group); None: not sized
    drop: float  # the drop these items detect at z stderrs (NaN: not sized)
    seconds: float  # expected CPU-seconds at these items
    why: str
    left_out: bool = False


@dataclass(frozen=True)
class PowerPlan:
    drop: float  # the drop asked for
    z: float
    budget_s: float | None  # CPU-seconds of one trial's evaluation; None: unbounded
    reached_drop: float  # what the sized tasks are sized for (>= drop when the budget binds; NaN: none sized)
    tasks: tuple[TaskItems, ...]

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tasks)

    def limits(self) -> tuple[tuple[str, int], ...]:
        """Benchmark name -> lm-eval limit, for EvalSpec.limits."""
        return tuple((t.name, t.limit) for t in self.tasks if t.limit is not None)

    @property
    def left_out(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks if t.left_out)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "tasks"}, "seconds": self.seconds,
                "tasks": [asdict(t) for t in self.tasks]}

    def table(self) -> str:
        rows = [("task", "pilot", "chance", "items", "limit", "detects", "CPU-s", "")]
        for t in self.tasks:
            rows.append((t.name, f"{t.score:.4g}", "-" if t.chance is None else f"{t.chance:.2f}", str(t.items),
                         "-" if t.limit is None else str(t.limit),
                         "-" if math.isnan(t.drop) or t.left_out else f"{t.drop:.3f}", f"{t.seconds:.0f}", t.why))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        budget = "no budget" if self.budget_s is None else f"budget {self.budget_s:.0f} CPU-s"
        sized = "no task sized" if math.isnan(self.reached_drop) else f"sized for {self.reached_drop:.3f}"
        head = (f"items by power: a drop of {self.drop:g} at {self.z:g} stderrs ({budget}: {sized}; "
                f"{self.seconds:.0f} CPU-s a trial)")
        return "\n".join([head, *("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)])


def lead_items(p: float, chance: float, z: float = Z) -> int | None:
    """Fewest items at which a baseline of ``p`` is above ``chance`` by ``z`` stderrs (``above_chance``);
    None when no number of items does (a lead of MIN_LEAD or less)."""
    lead = p - chance
    if not lead > MIN_LEAD:
        return None
    return math.floor(z * z * p * (1 - p) / (lead * lead)) + 1


def plan_items(costs: Sequence[TaskCost], drop: float, *, budget_s: float | None = None, z: float = Z,
               floor: int = FLOOR) -> PowerPlan:
    """Items per task for a drop of ``drop`` at ``z`` stderrs, within ``budget_s`` CPU-seconds.

    Every task kept also gets the items that show its baseline above chance (its lead): a cheap task
    with a small lead is worth its items; a task whose lead its split cannot show is left out, and
    where the leads overrun the budget the costliest lead is left out first."""
    sized = [c for c in costs if c.chance is not None]
    out: dict[str, TaskItems] = {c.name: TaskItems(c.name, c.score, None, 0, None, math.nan, 0.0,
                                                   "not a proportion: the sweep's --limit") for c in costs
                                 if c.chance is None}
    leads = {c.name: lead_items(c.score, c.chance, z) for c in sized}
    left = {c.name: c for c in sized if leads[c.name] is None or leads[c.name] > c.max_items}
    while True:
        live = [c for c in sized if c.name not in left]
        spare = None if budget_s is None else budget_s - sum(_cost(c, _floor(c, floor)) for c in left.values())
        reached = _reach(live, drop, spare, z, floor, leads)
        counts = {c.name: _items(c, reached, z, floor, leads) for c in live}
        if spare is None or not live or sum(_cost(c, counts[c.name]) for c in live) <= spare:
            break
        worst = max(live, key=lambda c: _cost(c, leads[c.name]))  # even the leads overrun the budget
        left[worst.name] = worst
    for c in live:
        n = _rounded(c, counts[c.name])
        needed = items_needed(c.score, reached, z)
        if n >= c.max_items and needed > c.max_items:
            why = f"all {c.max_items} items: fewer than the drop needs"
        elif leads[c.name] > max(needed, floor):
            why = f"{leads[c.name]} items show its lead over chance ({c.score:.3f} vs {c.chance:g})"
        else:
            why = f"sized for a drop of {reached:.3f}"
        out[c.name] = _entry(c, n, z, why)
    for c in left.values():
        n = _rounded(c, _floor(c, floor))
        lead = leads[c.name]
        how = ("" if lead is None else f"; its lead needs {lead} items, " +
               (f"the split has {c.max_items}" if lead > c.max_items else f"{_cost(c, lead):.0f} CPU-s: over the budget"))
        out[c.name] = _entry(c, n, z, f"left out: not above chance by {z:g} stderrs ({c.score:.3f} vs {c.chance:g} "
                             f"at {n} items{how})", left_out=True)
    return PowerPlan(drop, z, budget_s, reached if live else math.nan, tuple(out[c.name] for c in costs))


def _floor(c: TaskCost, floor: int) -> int:
    return min(floor, c.max_items)


def _se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def _items(c: TaskCost, drop: float, z: float, floor: int, leads: dict[str, int | None]) -> int:
    return min(max(items_needed(c.score, drop, z), floor, leads.get(c.name) or 0), c.max_items)


def _rounded(c: TaskCost, n: int) -> int:
    """Whole units of lm-eval's limit (a group's subtasks each get it), capped at the split."""
    return min(math.ceil(n / c.items_per_unit) * c.items_per_unit, c.max_items)


def _cost(c: TaskCost, n: int) -> float:
    return c.seconds_per_item * n


def _reach(live: list[TaskCost], drop: float, budget_s: float | None, z: float, floor: int,
           leads: dict[str, int | None]) -> float:
    """The smallest drop >= ``drop`` whose items fit the budget (bisection: items fall as the drop grows)."""
    total = lambda d: sum(_cost(c, _items(c, d, z, floor, leads)) for c in live)  # noqa: E731
    if budget_s is None or total(drop) <= budget_s:
        return drop
    lo, hi = drop, 1.0
    if total(hi) > budget_s:
        return hi  # even the floor overruns it: every task at the floor
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if total(mid) <= budget_s else (mid, hi)
    return hi


def _entry(c: TaskCost, n: int, z: float, why: str, left_out: bool = False) -> TaskItems:
    return TaskItems(c.name, c.score, c.chance, n, math.ceil(n / c.items_per_unit), detectable_drop(c.score, n, z),
                     _cost(c, n), why, left_out)
