"""Early stopping after stage 0: the one rule, as a typed object every part of the sweep shares.

A pruned trial stops (``stopped: catastrophic``) when its stage-0 perplexity is non-finite, or
above ``threshold`` times a reference perplexity: its model's unpruned baseline (the default), or
the random-pruning control's at the same width (``reference="control"``: controls then run before
the other metrics; a trial whose control was not measured goes on). The default threshold comes
from the early-stopping audit (analysis/stop_audit.py, README "Early stopping"): on the study's
Llama-3.2-1B, MAW at 60% is 27.9x its baseline and still above chance on 5 of 8 benchmarks, so
any threshold below that stops informative trials (the old 3.0 stopped 7 of the study's 12).
``StopRule.off()`` evaluates every trial fully (what the audit itself needs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from glu_ray.errors import GluRayError
from glu_ray.vocab import BASELINE

CONTROL = "control"
REFERENCES = (BASELINE, CONTROL)  # what the threshold multiplies
CONTROL_METRIC = "random"  # the importance metric whose trials are the control at each width
DEFAULT_THRESHOLD = 30.0  # see the module docstring and BENCHMARKS.md "Early stopping on SmolLM2"


@dataclass(frozen=True)
class Decision:
    stop: bool
    reason: str = ""  # why, in words; "" when the trial goes on


@dataclass(frozen=True)
class StopRule:
    enabled: bool = True
    reference: str = BASELINE  # or CONTROL: the random-pruning trial at the same width
    threshold: float = DEFAULT_THRESHOLD  # stop above this multiple of the reference perplexity
    control_metric: str = CONTROL_METRIC

    def __post_init__(self):
        if self.reference not in REFERENCES:
            raise GluRayError(f"stop rule: reference must be one of {', '.join(REFERENCES)}; got {self.reference!r}")
        if not (isinstance(self.threshold, (int, float)) and self.threshold > 1):
            raise GluRayError(f"stop rule: threshold must be > 1 (a multiple of the {self.reference} perplexity); "
                              f"got {self.threshold}")

    @classmethod
    def off(cls) -> "StopRule":
        return cls(enabled=False)

    @classmethod
    def from_dict(cls, d: dict) -> "StopRule":
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def needs_control(self, metrics) -> bool:
        """Whether control trials must finish before the others: the rule reads them, the grid has them."""
        return self.enabled and self.reference == CONTROL and self.control_metric in metrics

    def decide(self, ppl: float, baseline_ppl: float | None, control_ppl: float | None = None) -> Decision:
        """For a pruned trial's stage-0 perplexity; the reference perplexities are None when unknown."""
        if not self.enabled:
            return Decision(False)
        if not math.isfinite(ppl):
            return Decision(True, f"non-finite perplexity ({ppl})")
        ref = baseline_ppl if self.reference == BASELINE else control_ppl
        if ref is None or not math.isfinite(ref) or not ppl > self.threshold * ref:
            return Decision(False)
        name = BASELINE if self.reference == BASELINE else f"{self.control_metric} {CONTROL}"
        return Decision(True, f"perplexity {ppl:.4g} > {self.threshold:g} x {name} {ref:.4g}")

    def describe(self) -> str:
        if not self.enabled:
            return "off"
        ref = BASELINE if self.reference == BASELINE else f"{self.control_metric} {CONTROL} at the same width"
        return f"ppl > {self.threshold:g} x {ref}"
