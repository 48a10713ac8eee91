"""A pilot of the baseline: each benchmark on a few items, for what sizing items by power reads.

One ``run_suite`` call per benchmark, so each one's CPU-seconds are its own (process time: the
CPU a task costs, whatever threads ran it). lm-eval's own ``n-samples`` says how many items were
scored, how many the split has (the local hub's 300, or the full split) and, for a group, how many
subtasks each unit of the limit covers. A group's pilot is about ``items`` items over all its
subtasks (MMLU: 1 per subject, not 30: 57 subjects x 30 5-shot items cost ~40 minutes on a CPU).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Mapping

from glu_ray.errors import GluRayError
from glu_ray.evaluation.harness import run_suite, task_manager
from glu_ray.evaluation.meter import Meter
from glu_ray.evaluation.power import TaskCost
from glu_ray.evaluation.preflight import leaf_configs
from glu_ray.evaluation.suites import Suite

PILOT_ITEMS = 30  # per benchmark (per subtask of a group): p's stderr ~0.09, enough for p (1 - p)


def pilot_costs(model, tokenizer, suite: Suite, *, items: int = PILOT_ITEMS, batch_size: int = 8,
                max_length: int | None = None, seed: int = 1234,
                gen_kwargs: Mapping[str, object] | None = None, meter: Meter | None = None) -> tuple[TaskCost, ...]:
    """Each benchmark of ``suite`` scored on ``items`` items: its score, CPU-seconds per item, split
    size. A ``meter`` prints a line every 20 s of a long one."""
    # What a process pays once (lm-eval's imports, ~8 s; its task index) is not a per-item cost:
    # paid before the clock starts, or the first benchmark would carry it.
    import lm_eval.evaluator
    import lm_eval.models.huggingface  # noqa: F401

    out = []
    for bench in suite.benchmarks:
        index = task_manager(suite.tasks_dirs, (bench.task,)).task_index
        limit = math.ceil(items / max(1, len(list(leaf_configs(index, bench.task)))))
        cpu = time.process_time()
        try:
            result = run_suite(model, tokenizer, replace(suite, benchmarks=(bench,)), limit=limit,
                               batch_size=batch_size, max_length=max_length, seed=seed, gen_kwargs=gen_kwargs,
                               meter=meter)
        except GluRayError:
            raise
        except Exception as err:  # e.g. IFEval without NLTK's punkt_tab: say which benchmark
            raise GluRayError(f"the baseline's pilot failed on {bench.name}: {type(err).__name__}: "
                              f"{_message(err)}") from err
        seconds = time.process_time() - cpu
        counts = result.raw["n-samples"].values()  # the leaf tasks this benchmark ran
        scored = sum(int(n["effective"]) for n in counts)
        out.append(TaskCost(bench.name, result.metrics[bench.key], bench.chance, seconds / max(scored, 1),
                            sum(int(n["original"]) for n in counts), items_per_unit=max(len(counts), 1)))
    return tuple(out)


def _message(err: Exception) -> str:
    """The exception's first line of words (NLTK's LookupError opens with a row of asterisks)."""
    words = [ln.strip() for ln in str(err).splitlines() if any(ch.isalnum() for ch in ln)]
    return words[0][:300] if words else type(err).__name__
