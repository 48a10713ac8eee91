"""Run a benchmark suite on an in-memory (possibly pruned) model with EleutherAI lm-evaluation-harness.

One ``lm_eval.simple_evaluate`` call per distinct few-shot setting, on
``HFLM(pretrained=model, tokenizer=tok, max_length=...)``: the caller's model object is scored as is,
never reloaded or copied, and never deleted. Metric names are flattened through glu_ray.vocab.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from itertools import groupby
from typing import Iterable, Mapping

from glu_ray.errors import GluRayError, first_line
from glu_ray.vocab import metric_key, split_lm_eval_key
from glu_ray.evaluation.meter import Meter
from glu_ray.evaluation.metered_lm import metered_hflm
from glu_ray.evaluation.suites import Benchmark, Suite
from glu_ray.models.loading import free_memory

log = logging.getLogger(__name__)

# lm-eval bootstraps the stderr of non-mean metrics (e.g. lambada perplexity) with 100k resamples by
# default, which costs more than the tiny suite itself; 1000 is plenty for an error bar.
BOOTSTRAP_ITERS = 1000
RAW_KEYS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]  # "mmlu/acc", "mmlu/acc_stderr", "gsm8k_cot/exact_match.strict-match"
    raw: dict  # lm-eval's results, JSON-serialisable, merged over the few-shot calls
    seconds: float
    # benchmark name -> every (metric, filter) lm-eval reported for it, stderrs aside, in its order
    reported: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # benchmark name -> "<task>/<doc_id>" -> the primary metric on that item, for each benchmark whose
    # primary metric is the mean over its items (not a perplexity or F1): what a paired comparison of
    # two models on the same items reads (analysis.fragility)
    items: dict[str, dict[str, float]] = field(default_factory=dict)


def task_manager(tasks_dirs: tuple[str, ...] = (), tasks: tuple[str, ...] = ()):
    """lm-eval's TaskManager for these include paths. Where every one of ``tasks`` lives in those
    folders alone (the tiny suite), lm-eval's ~10k built-in YAMLs are not indexed: that costs
    seconds per process, and every Ray trial is a fresh process."""
    if tasks_dirs and tasks:
        own = _task_manager(tasks_dirs, include_defaults=False)
        if all(_self_contained(own.task_index, t) for t in tasks):
            return own
    return _task_manager(tasks_dirs, include_defaults=True)


@functools.lru_cache(maxsize=8)
def _task_manager(tasks_dirs: tuple[str, ...], include_defaults: bool):
    from lm_eval.tasks import TaskManager  # lazy: lm_eval.tasks costs ~0.9 s at import (python -X importtime, shared CPU)

    return TaskManager(include_path=list(tasks_dirs) or None, include_defaults=include_defaults)


def _self_contained(index: dict, name: str) -> bool:
    """``name`` and, for a group, every subtask it lists are in ``index`` (a real suite's groups
    override built-in tasks: those need lm-eval's own index)."""
    entry = index.get(name)
    if entry is None or entry.cfg is None or "include" in entry.cfg:
        return False
    if entry.cfg.get("group") is None:
        return True
    subtasks = entry.cfg.get("task") or []
    return all(_self_contained(index, t if isinstance(t, str) else t.get("task", "")) for t in subtasks)


def check_tasks(suite: Suite, benchmarks: Iterable[Benchmark] | None = None) -> None:
    """Every benchmark's task (or group, or tag) must be known to lm-eval (built-ins + the suite's folders)."""
    tasks = tuple(b.task for b in (benchmarks or suite.benchmarks))
    known = set(task_manager(suite.tasks_dirs, tasks).all_tasks)
    missing = [t for t in tasks if t not in known]
    if missing:
        where = " and ".join(["lm-eval's built-in tasks", *suite.tasks_dirs])
        raise GluRayError(f"unknown lm-eval task(s) {', '.join(missing)}: not found in {where}")


def check_tokenizer(tokenizer, suite: Suite, benchmarks: Iterable[Benchmark] | None = None) -> None:
    if tokenizer is None:
        raise GluRayError("evaluation needs the model's tokenizer, got None")
    chat = [b.name for b in (suite.benchmarks if benchmarks is None else benchmarks) if suite.chat(b)]
    if chat and not getattr(tokenizer, "chat_template", None):
        raise GluRayError(f"suite {suite.name!r} prompts {', '.join(chat)} through a chat template but the "
                          "tokenizer has none (use a base suite, or an instruction-tuned model)")


def context_length(model, requested: int | None) -> int | None:
    """The fixed HFLM context: the requested one, capped by what the model's positions allow."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if requested is None:
        return limit
    return min(requested, limit) if limit else requested


def run_suite(model, tokenizer, suite: Suite, *, stage: str | None = None, limit: int | float | None = None,
              limits: Mapping[str, int] | None = None, batch_size: int | str = 8, max_length: int | None = None,
              seed: int = 1234, bootstrap_iters: int = BOOTSTRAP_ITERS, gen_kwargs: Mapping[str, object] | None = None,
              meter: Meter | None = None) -> EvalResult:
    """Evaluate ``suite`` (or one of its stages) on an in-memory model; metrics flat and MLflow-safe.
    ``limits`` (benchmark name -> items, e.g. sized by evaluation/power.py) override ``limit`` per
    benchmark; as lm-eval's own limit, a group's applies to each of its subtasks.
    ``gen_kwargs`` (lm-eval's ``--gen_kwargs``, e.g. ``max_gen_toks``) update every generating task's.
    A ``meter`` counts the requests answered (progress lines on a long stage)."""
    benchmarks = suite.benchmarks if stage is None else suite.stage(stage)
    check_tokenizer(tokenizer, suite, benchmarks)
    check_tasks(suite, benchmarks)
    if suite.max_gen_toks:  # the suite's cap; an explicit gen_kwargs max_gen_toks still wins
        gen_kwargs = {"max_gen_toks": suite.max_gen_toks, **(gen_kwargs or {})}
    length = context_length(model, max_length or suite.max_length)
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    reported: dict[str, tuple[tuple[str, str], ...]] = {}
    items: dict[str, dict[str, float]] = {}
    calls = []
    limits = dict(limits or {})
    limit_of = lambda b: limits.get(b.name, limit)  # noqa: E731
    # One simple_evaluate call per (few-shot count, chat template, limit): lm-eval sets each per call.
    setting = lambda b: (b.num_fewshot, suite.chat(b), limit_of(b) is None, limit_of(b) or 0)  # noqa: E731 - sort and group key
    for (shots, chat, _, _), group in groupby(sorted(benchmarks, key=setting), key=setting):
        group = tuple(group)
        out = _evaluate(model, tokenizer, suite, group, shots, chat=chat, limit=limit_of(group[0]), batch_size=batch_size,
                        max_length=length, seed=seed, bootstrap_iters=bootstrap_iters, gen_kwargs=gen_kwargs,
                        meter=meter)
        calls.append((shots, out))
        metrics.update(flatten(group, out))
        reported.update({b.name: reported_metrics(b, out) for b in group})
        items.update({b.name: scores for b in group
                      if (scores := item_scores(b.task, b.metric, b.filter, out, metrics[b.key]))})
        out.pop("samples", None)  # every prompt and answer: kept no longer than the scores above need
    raw = merge_raw(calls)
    raw["glu_ray"] = {"suite": suite.name, "stage": stage, "max_length": length, "limit": limit, "limits": limits, "seed": seed,
                      "gen_kwargs": dict(gen_kwargs or {})}
    return EvalResult(metrics, _jsonable(raw), time.perf_counter() - started, reported, items)


def merge_raw(calls: list[tuple[int, dict]]) -> dict:
    """lm-eval's outputs of the few-shot calls as one: a task (or group) evaluated in more than one
    call keeps each, keyed ``"<task> (<k>-shot)"``; every other key as lm-eval wrote it."""
    seen: dict[str, int] = {}
    for _, out in calls:
        for task in {t for key in RAW_KEYS for t in (out.get(key) or {})}:
            seen[task] = seen.get(task, 0) + 1
    raw: dict = {key: {} for key in RAW_KEYS}
    for shots, out in calls:
        for key in RAW_KEYS:
            for task, value in (out.get(key) or {}).items():
                raw[key][task if seen[task] == 1 else f"{task} ({shots}-shot)"] = value
    return raw


def _evaluate(model, tokenizer, suite: Suite, group: tuple[Benchmark, ...], shots: int, *, chat: bool, limit,
              batch_size, max_length, seed, bootstrap_iters, gen_kwargs, meter=None) -> dict:
    """One simple_evaluate call; the HFLM wrapper and lm-eval's task state are freed afterwards."""
    from lm_eval import simple_evaluate  # lazy: lm-eval's evaluator and HFLM cost ~4 s at import (python -X importtime, shared CPU)
    from lm_eval.models.huggingface import HFLM  # lazy: HFLM costs ~4 s at import (python -X importtime, shared CPU)

    pad_token = tokenizer.pad_token  # HFLM sets one when missing; give the caller theirs back
    hflm_args = {"pretrained": model, "tokenizer": tokenizer, "batch_size": batch_size, "max_length": max_length}
    label = ", ".join(b.name for b in group)
    lm = HFLM(**hflm_args) if meter is None else metered_hflm(meter, label, **hflm_args)
    try:
        return simple_evaluate(
            model=lm, tasks=[b.task for b in group], num_fewshot=shots, limit=limit,
            task_manager=task_manager(suite.tasks_dirs, tuple(b.task for b in group)), log_samples=True, bootstrap_iters=bootstrap_iters,
            gen_kwargs=dict(gen_kwargs) if gen_kwargs else None,
            apply_chat_template=chat, fewshot_as_multiturn=chat,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        )
    except ConnectionError as err:  # datasets' error for a hub dataset it could neither reach nor find cached
        raise GluRayError(f"a task's data is not reachable: {first_line(err)}; offline, cache it once online "
                          "(or point HF_ENDPOINT at a hub that has it)") from None
    finally:
        tokenizer.pad_token = pad_token
        del lm
        free_memory()


def flatten(benchmarks: Iterable[Benchmark], out: dict) -> dict[str, float]:
    """lm-eval's ``results[task]["acc,none"]`` -> ``{"<bench>/acc": x}``, every numeric metric and filter.

    Groups (mmlu) are read from ``groups`` when lm-eval puts their aggregate there. Raises when a
    benchmark's primary metric is missing: a suite/task mismatch must not pass silently.
    """
    metrics: dict[str, float] = {}
    for bench in benchmarks:
        table = _table(bench, out)
        for raw_key, value in table.items():
            if "," not in raw_key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # "alias", "N/A" stderrs, sample counts
            name, filter_name = split_lm_eval_key(raw_key)
            metrics[metric_key(bench.name, name, filter_name)] = float(value)
        if bench.key not in metrics:
            got = sorted(k for k in table if "," in k)
            raise GluRayError(f"lm-eval task {bench.task!r} reported no {bench.metric} ({bench.filter}); it reported: "
                              f"{', '.join(got) or 'nothing'}")
    return metrics


def item_scores(task: str, metric: str, filter_name: str, out: Mapping, reported: float) -> dict[str, float] | None:
    """"<task>/<doc_id>" -> ``metric`` (under ``filter_name``) on that item, from lm-eval's logged
    samples (``out["samples"]``; a group's across its leaf tasks). None where those per-item values
    are not numbers or do not average to the ``reported`` score: the metric is not a mean over items
    (a perplexity, F1, a group not weighted by size), so there is nothing to pair item by item."""
    samples = out.get("samples") or {}
    scores: dict[str, float] = {}
    for leaf in _leaf_tasks(task, out.get("group_subtasks") or {}):
        for sample in samples.get(leaf, ()):
            value = sample.get(metric)
            if sample.get("filter") != filter_name:
                continue
            if not isinstance(value, (bool, int, float)):
                return None
            scores[f"{leaf}/{sample['doc_id']}"] = float(value)
    if not scores or not math.isclose(math.fsum(scores.values()) / len(scores), reported, rel_tol=1e-6, abs_tol=1e-9):
        return None
    return scores


def _leaf_tasks(name: str, subtasks: Mapping[str, list]) -> list[str]:
    if name not in subtasks:
        return [name]
    return [leaf for sub in subtasks[name] for leaf in _leaf_tasks(sub, subtasks)]


def _table(bench: Benchmark, out: dict) -> dict:
    """lm-eval's row for a benchmark: a group's aggregate (under ``groups``), else its task's."""
    return (out.get("groups") or {}).get(bench.task) or (out.get("results") or {}).get(bench.task) or {}


def reported_metrics(bench: Benchmark, out: dict) -> tuple[tuple[str, str], ...]:
    """Every (metric, filter) lm-eval reported a number for, stderrs aside; the primary first."""
    pairs = [split_lm_eval_key(k) for k, v in _table(bench, out).items()
             if "," in k and isinstance(v, (int, float)) and not isinstance(v, bool)]
    pairs = [p for p in dict.fromkeys(pairs) if not p[0].endswith("_stderr")]
    return tuple(sorted(pairs, key=lambda p: p != (bench.metric, bench.filter)))


def _jsonable(obj):
    """lm-eval configs can hold callables and numpy scalars; artifacts need plain JSON."""
    def default(o):
        if hasattr(o, "item"):
            return o.item()
        return str(o)

    return json.loads(json.dumps(obj, default=default, allow_nan=True))


def format_table(result: EvalResult, suite: Suite) -> str:
    """A fixed-width table of every metric each benchmark reported, the primary first (what
    `glu-ray eval` prints); a benchmark evaluated at several few-shot counts is a row per count."""
    rows = [("benchmark", "shots", "stage", "capability", "metric", "value", "stderr")]
    for b in suite.benchmarks:
        for name, filter_name in result.reported.get(b.name, ((b.metric, b.filter), *((m, "none") for m in b.extra_metrics))):
            value = result.metrics.get(metric_key(b.name, name, filter_name))
            err = result.metrics.get(metric_key(b.name, f"{name}_stderr", filter_name))
            if value is None:
                continue
            rows.append((b.name, str(b.num_fewshot), b.stage, b.capability,
                         name + ("" if filter_name == "none" else f" ({filter_name})"), _fmt(value), _fmt(err)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4f}" if abs(x) < 1000 else f"{x:.1f}"
