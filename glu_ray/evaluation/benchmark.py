"""One benchmark of a suite: which lm-eval task (or group), scored how, at which stage."""

from __future__ import annotations

from dataclasses import dataclass

from glu_ray.errors import GluRayError
from glu_ray.vocab import metric_key

STAGES = ("cheap", "full")
CAPABILITIES = (
    "knowledge", "reasoning", "commonsense", "physical", "reading QA", "in-context",
    "truthfulness", "math", "instruction following", "language modelling",
    "custom",  # tasks a user names from their own --tasks-dir
)


@dataclass(frozen=True)
class Benchmark:
    name: str  # short id used in metric names, e.g. "mmlu", "gsm8k_cot", "wikitext"
    task: str  # lm-eval task (or group) name
    num_fewshot: int
    metric: str  # primary metric, e.g. "acc", "acc_norm", "word_perplexity", "exact_match"
    higher_is_better: bool
    chance: float | None  # e.g. 0.25 for 4-way MMLU; None for perplexities
    capability: str
    stage: str  # "cheap" or "full"
    filter: str = "none"  # lm-eval filter of the primary metric ("strict-match" for gsm8k)
    extra_metrics: tuple[str, ...] = ()  # also reported, e.g. ("perplexity",) for lambada
    # Prompts through the model's chat template: None = the suite's ``apply_chat_template``. Lets one
    # suite score loglikelihood tasks plainly (as the study and published small-model figures do)
    # and send IFEval's instructions through the template, in one trial.
    chat_template: bool | None = None

    def __post_init__(self):
        problems = []
        if self.stage not in STAGES:
            problems.append(f"stage {self.stage!r} is not one of {', '.join(STAGES)}")
        if self.capability not in CAPABILITIES:
            problems.append(f"capability {self.capability!r} is not one of {', '.join(CAPABILITIES)}")
        if not isinstance(self.num_fewshot, int) or self.num_fewshot < 0:
            problems.append(f"num_fewshot must be a non-negative integer, got {self.num_fewshot!r}")
        if self.chance is not None and not 0.0 <= float(self.chance) <= 1.0:
            problems.append(f"chance must be in [0, 1] or null, got {self.chance!r}")
        if self.chat_template not in (None, True, False):
            problems.append(f"chat_template must be true, false or absent, got {self.chat_template!r}")
        if not self.name or "," in self.name or "/" in self.name:
            problems.append(f"name {self.name!r} must be non-empty, without ',' or '/'")
        if problems:
            raise GluRayError(f"benchmark {self.name or '?'}: " + "; ".join(problems))

    @property
    def key(self) -> str:
        """The primary metric's flat name in EvalResult.metrics, e.g. ``gsm8k_cot/exact_match.strict-match``."""
        return metric_key(self.name, self.metric, self.filter)
