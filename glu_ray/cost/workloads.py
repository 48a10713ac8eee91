"""Benchmark workloads: what each lm-eval task asks of a model, in requests and tokens.

The numbers live in ``workloads.yaml`` (one commented entry per task, saying where each number
comes from); this module loads them into typed records and derives the token counts that cost
time on a GPU: tokens run through forward passes ("prefill") and tokens generated one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Literal, Mapping, Sequence

import yaml

from glu_ray.errors import GluRayError

Kind = Literal["multiple_choice", "loglikelihood", "rolling", "generate"]
KINDS = ("multiple_choice", "loglikelihood", "rolling", "generate")
GenMode = Literal["typical", "max"]


@dataclass(frozen=True)
class Workload:
    """One benchmark's request profile (token lengths are means, in Llama-3 tokens)."""

    task: str
    kind: Kind
    docs: int
    num_fewshot: int = 0
    context_tokens: int = 0
    choices: int = 1
    continuation_tokens: int = 1
    shared_context: bool = True
    max_gen_toks: int = 0
    typical_gen_tokens: int = 0
    until: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise GluRayError(f"workload {self.task!r}: kind must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if self.docs < 1 or self.context_tokens < 1 or self.choices < 1:
            raise GluRayError(f"workload {self.task!r}: docs, context_tokens and choices must be >= 1")
        if self.kind == "generate" and not 0 < self.typical_gen_tokens <= self.max_gen_toks:
            raise GluRayError(f"workload {self.task!r}: need 0 < typical_gen_tokens <= max_gen_toks")

    @property
    def requests(self) -> int:
        """lm-eval Instances this benchmark creates."""
        return self.docs * (self.choices if self.kind == "multiple_choice" else 1)

    def forwards_per_doc(self) -> int:
        """Forward passes per document: 1-token choices sharing a context are scored together."""
        if self.kind != "multiple_choice":
            return 1
        one_pass = self.shared_context and self.continuation_tokens == 1
        return 1 if one_pass else self.choices

    def prefill_tokens(self) -> int:
        """Tokens run through full forward passes (scoring, or the prompt of a generation)."""
        if self.kind in ("rolling", "generate"):
            return self.docs * self.context_tokens
        per_forward = self.context_tokens + self.continuation_tokens
        return self.docs * self.forwards_per_doc() * per_forward

    def gen_tokens(self, mode: GenMode = "typical") -> int:
        """Tokens generated per document (0 unless kind == generate)."""
        if self.kind != "generate":
            return 0
        return self.typical_gen_tokens if mode == "typical" else self.max_gen_toks

    def decode_steps(self, batch_size: int, mode: GenMode = "typical") -> int:
        """Sequential decode steps: batches of prompts x tokens each batch generates."""
        return math.ceil(self.docs / batch_size) * self.gen_tokens(mode)

    def scaled(self, fraction: float) -> "Workload":
        """The same profile with ``fraction`` of the documents (at least 1): a shorter run."""
        return replace(self, docs=max(1, round(self.docs * fraction)))


@dataclass(frozen=True)
class WorkloadTable:
    workloads: Mapping[str, Workload]
    suites: Mapping[str, tuple[str, ...]]

    def get(self, task: str) -> Workload:
        try:
            return self.workloads[task]
        except KeyError:
            raise GluRayError(f"no workload profile for {task!r}; known: {', '.join(sorted(self.workloads))}") from None

    def resolve(self, names: str | Sequence[str]) -> tuple[Workload, ...]:
        """A suite name (``base``) or a list of task names -> their workloads, in order."""
        if isinstance(names, str):
            if names not in self.suites:
                raise GluRayError(f"unknown suite {names!r}; known: {', '.join(sorted(self.suites))}")
            names = self.suites[names]
        return tuple(self.get(n) for n in names)


def parse_workloads(data: Mapping) -> WorkloadTable:
    """Validate the YAML's mapping into a WorkloadTable (unknown keys are an error, not ignored)."""
    items = {}
    for task, fields in data.get("workloads", {}).items():
        fields = dict(fields)
        fields["until"] = tuple(fields.get("until", ()))
        try:
            items[task] = Workload(task=task, **fields)
        except TypeError as err:
            raise GluRayError(f"workload {task!r}: {err}") from None
    suites = {name: tuple(tasks) for name, tasks in data.get("suites", {}).items()}
    table = WorkloadTable(items, suites)
    for tasks in suites.values():
        table.resolve(list(tasks))  # every suite names only known workloads
    return table


@lru_cache(maxsize=1)
def load_workloads() -> WorkloadTable:
    """The shipped table (glu_ray/cost/workloads.yaml)."""
    text = resources.files("glu_ray.cost").joinpath("workloads.yaml").read_text()
    return parse_workloads(yaml.safe_load(text))
