"""Target MLP width, said three ways: pruning percentage, expansion ratio, or explicit width.

The arithmetic follows the reference study (and OptiPFair): removing p% of I neurons keeps
``I - min(int(p/100 * I), I - 1)``; an expansion ratio r is first turned into the percentage
that reaches ``r * hidden``, so Llama-3.2-1B (H=2048, I=8192) at 2.4x keeps 4916, exactly as 40%.
"""

from __future__ import annotations

from dataclasses import dataclass

from glu_ray.errors import GluRayError

DIVISORS = (32, 64, 128, 256)


@dataclass(frozen=True)
class TargetWidth:
    """What the user asked for: exactly one of the three fields is set."""

    pruning_pct: float | None = None
    expansion_ratio: float | None = None
    width: int | None = None
    divisor: int | None = None

    def __post_init__(self) -> None:
        given = [f for f in ("pruning_pct", "expansion_ratio", "width") if getattr(self, f) is not None]
        if len(given) != 1:
            raise GluRayError(
                "give exactly one of pruning percentage, expansion ratio or width"
                + (f" (got {' and '.join(given)})" if given else "")
            )
        if self.divisor is not None and self.divisor not in DIVISORS:
            raise GluRayError(f"divisor must be one of {', '.join(map(str, DIVISORS))} (got {self.divisor})")


@dataclass(frozen=True)
class Width:
    """The width actually reached, in all three units."""

    width: int
    intermediate: int
    hidden: int

    @property
    def expansion_ratio(self) -> float:
        return self.width / self.hidden

    @property
    def pruning_pct(self) -> float:
        """Percentage of neurons actually removed."""
        return 100.0 * (1 - self.width / self.intermediate)


def _kept_from_pct(pct: float, intermediate: int) -> int:
    # round(.., 6) guards against 3276.9999999 from float noise; int() then truncates as the study.
    removed = min(int(round(pct / 100 * intermediate, 6)), intermediate - 1)
    return intermediate - removed


def resolve_width(target: TargetWidth, intermediate: int, hidden: int) -> Width:
    """Turn a TargetWidth into a concrete width for a model with sizes (I, H) from its config."""
    if target.pruning_pct is not None:
        if not 0 <= target.pruning_pct < 100:
            raise GluRayError(f"pruning percentage must be in [0, 100) (got {target.pruning_pct})")
        kept = _kept_from_pct(target.pruning_pct, intermediate)
    elif target.expansion_ratio is not None:
        native = intermediate / hidden
        if not 0 < target.expansion_ratio <= native + 1e-9:
            raise GluRayError(
                f"expansion ratio must be in (0, {native:g}] for this model "
                f"(hidden {hidden}, intermediate {intermediate}); got {target.expansion_ratio}"
            )
        pct = (1 - target.expansion_ratio * hidden / intermediate) * 100
        kept = _kept_from_pct(pct, intermediate)
    else:
        if not 1 <= target.width <= intermediate:
            raise GluRayError(f"width must be in [1, {intermediate}] for this model (got {target.width})")
        kept = target.width
    if target.divisor is not None:
        kept = round_to_divisor(kept, target.divisor, intermediate)
    return Width(kept, intermediate, hidden)


def round_to_divisor(width: int, divisor: int, intermediate: int) -> int:
    """Nearest multiple of ``divisor`` (halves round up), clamped to [divisor, I]."""
    nearest = (width + divisor // 2) // divisor * divisor
    return max(divisor, min(nearest, intermediate))

