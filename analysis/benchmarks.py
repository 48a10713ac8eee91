"""What analysis needs to know about a benchmark: its headline metric, direction, chance, capability.

The source of truth is ``glu_ray.evaluation.suites`` (the suites evaluation runs). The one exception is the
published study's tables, whose readme reports a different headline for LAMBADA than the
study suite scores (see STUDY_REPORTED); reproducing its deltas needs the metric it reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from glu_ray.errors import GluRayError
from glu_ray.vocab import metric_key
from glu_ray.evaluation.suites import SUITES, load_suite, split_items


@dataclass(frozen=True)
class BenchMeta:
    name: str
    metric: str
    filter: str
    higher_is_better: bool
    chance: float  # NaN where no chance level exists (perplexities)
    capability: str
    task: str = ""  # lm-eval task name when it differs from ``name``
    items: int | None = None  # items in the task's scored split, when known (split_sizes.yaml)

    @property
    def key(self) -> str:
        """Where the score lives: ``mmlu/acc``, ``gsm8k/exact_match.flexible-extract``."""
        return metric_key(self.name, self.metric, self.filter)

    @property
    def stderr_key(self) -> str:
        return metric_key(self.name, f"{self.metric}_stderr", self.filter)

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def binomial_stderr(self, score: float) -> float:
        """sqrt(p (1 - p) / n) for a higher-is-better score in [0, 1] over ``items`` items (an
        upper bound for any mean of per-item scores in [0, 1]); NaN where that does not apply."""
        if not self.items or not self.higher_is_better or not 0.0 <= score <= 1.0:
            return math.nan
        return math.sqrt(score * (1.0 - score) / self.items)


# What the study's readme reports where the study suite's headline is something else: LAMBADA as
# perplexity (its "Lambada PPL" column). (GSM8K: both report flexible-extract, baseline 0.0660.)
STUDY_REPORTED = {
    "lambada_openai": dict(metric="perplexity", filter="none", higher_is_better=False, chance=math.nan),
}


# A sweep's stage-0 fast WikiText-2 perplexity (glu_ray.evaluation.perplexity), logged by every
# trial, stopped ones included: what early stopping reads, and a language-modelling point itself.
STAGE0 = BenchMeta("ppl", "word_perplexity", "none", False, math.nan, "language modelling")


def _from_suite(name: str) -> dict[str, BenchMeta] | None:
    try:
        suite = load_suite(name)
    except GluRayError:  # a custom suite file that is gone: fall back to every known benchmark
        return None
    items = split_items()
    return {
        b.name: BenchMeta(b.name, b.metric, b.filter, b.higher_is_better,
                          math.nan if b.chance is None else float(b.chance), b.capability, b.task,
                          items.get(b.task))
        for b in suite.benchmarks
    }


def benchmark_meta(suite: str | None = None) -> dict[str, BenchMeta]:
    """Benchmarks by name: a named suite's own when it loads; otherwise every shipped suite's
    (the study's last, so its settings win) so results of unknown origin still parse."""
    named = _from_suite(suite) if suite else None
    if named:
        return named
    merged: dict[str, BenchMeta] = {}
    for name in sorted(SUITES, key=lambda n: n == "study"):
        merged.update(_from_suite(name) or {})
    return merged


def published_meta() -> dict[str, BenchMeta]:
    """The study suite with the headline metrics the study's own tables report."""
    meta = benchmark_meta("study")
    return {name: replace(b, **STUDY_REPORTED.get(name, {})) for name, b in meta.items()}
