"""Before any model loads: lm-eval knows every task, and every task's data can be read.

Online, ``check_hub_inputs`` asks the hub in use (HF_ENDPOINT) for every model and dataset
repository the run needs, in one pass (glu_ray/hub_repos.py). Offline (``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE``), a hub dataset missing
from the local cache fails inside lm-eval only after the model has loaded; in a sweep, in every
trial after its stage 0. So offline, each task's hub dataset is resolved here, the way lm-eval's
``download()`` will resolve it (``datasets.load_dataset_builder``: the cache lookup, no data read).
"""

from __future__ import annotations

from typing import Iterable, Iterator

from glu_ray.errors import GluRayError
from glu_ray.evaluation.harness import check_tasks, task_manager
from glu_ray.evaluation.perplexity import WIKITEXT
from glu_ray.evaluation.suites import Benchmark, Suite
from glu_ray.hub_repos import DATASET, MODEL, Repo, check_repos, is_hub_id

STAGE0 = "stage 0 (WikiText-2)"


def check_hub_inputs(models: Iterable[tuple[str, str | None]], evals: Iterable[tuple[Suite, Iterable[Benchmark]]],
                     *, stage0: bool = False) -> None:
    """Online: every hub model (source, revision), every hub dataset the benchmarks' tasks read, and
    stage 0's WikiText-2 when ``stage0``, asked for at the endpoint in use in one pass."""
    from huggingface_hub import constants  # lazy: with the first hub call

    if constants.HF_HUB_OFFLINE:
        return  # check_hub_data: the local cache
    needs: dict[Repo, list[str]] = {Repo(MODEL, source, revision): [] for source, revision in models
                                    if is_hub_id(source)}
    for suite, benchmarks in evals:
        benchmarks = tuple(benchmarks)
        index = task_manager(suite.tasks_dirs, tuple(b.task for b in benchmarks)).task_index
        for bench in benchmarks:
            for path, _ in hub_datasets(index, bench.task):
                readers = needs.setdefault(Repo(DATASET, path), [])
                readers += [] if bench.name in readers else [bench.name]
    if stage0:
        needs.setdefault(Repo(DATASET, WIKITEXT[0]), []).append(STAGE0)
    check_repos(needs)


def check_suite_inputs(suite: Suite, benchmarks: Iterable[Benchmark] | None = None) -> None:
    """Names known to lm-eval, the real items' manifest, and offline, every hub dataset cached."""
    benchmarks = tuple(benchmarks or suite.benchmarks)
    check_tasks(suite, benchmarks)
    check_hub_data(suite, benchmarks)


def check_hub_data(suite: Suite, benchmarks: Iterable[Benchmark] | None = None) -> None:
    import datasets  # lazy: datasets costs ~1.5 s at import (python -X importtime, shared CPU)

    if not datasets.config.HF_HUB_OFFLINE:
        return
    benchmarks = tuple(benchmarks or suite.benchmarks)
    index = task_manager(suite.tasks_dirs, tuple(b.task for b in benchmarks)).task_index
    reads = {b.name: sorted(set(hub_datasets(index, b.task)), key=str) for b in benchmarks}
    cached = {ds: _cached(datasets, *ds) for ds in {ds for found in reads.values() for ds in found}}  # each once
    missing: dict[str, tuple[set, list]] = {}  # dataset path -> (its configs, the benchmarks that read them)
    for bench, found in reads.items():
        for path, name in found:
            if not cached[path, name]:
                configs, readers = missing.setdefault(path, (set(), []))
                configs.add(name)
                if bench not in readers:
                    readers.append(bench)
    if missing:
        what = "; ".join(f"{_label(path, configs)} for {', '.join(readers)}" for path, (configs, readers) in missing.items())
        raise GluRayError(f"offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and not in the Hugging Face cache: "
                          f"{what}. Run once online (or with HF_ENDPOINT at a hub that has them) to cache them")


def _label(path: str, configs: set) -> str:
    """``cais/mmlu (57 configs)``, ``openai/gsm8k (main)``, ``baber/piqa``."""
    named = sorted(c for c in configs if c)
    if len(named) > 1:
        return f"{path} ({len(named)} configs)"
    return f"{path} ({named[0]})" if named else path


def hub_datasets(index: dict, task: str) -> Iterator[tuple[str, str | None]]:
    """(dataset_path, dataset_name) of every hub-backed task under ``task``
    (a task, group or tag in lm-eval's index); tasks that build their own data are skipped."""
    for cfg in leaf_configs(index, task):
        yield from _from_config(cfg)


def leaf_configs(index: dict, task: str, seen: frozenset = frozenset()) -> Iterator[dict]:
    """The config of every task under ``task`` (itself, or a group's or tag's members, recursively),
    read from lm-eval's index: nothing is loaded."""
    entry = index.get(task)
    if entry is None or task in seen:  # unknown names are check_tasks' to report; a cycle ends here
        return
    seen = seen | {task}
    kind = entry.kind.name
    if kind == "TAG":
        for member in sorted(entry.tags):
            yield from leaf_configs(index, member, seen)
    elif kind == "GROUP":
        for item in (entry.cfg or {}).get("task") or []:
            if isinstance(item, dict) and "dataset_path" in item:
                yield item
            else:
                yield from leaf_configs(index, item.get("task", "") if isinstance(item, dict) else item, seen)
    else:
        yield entry.cfg or {}


def _from_config(cfg: dict) -> Iterator[tuple[str, str | None]]:
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES  # lazy: with datasets itself

    path = cfg.get("dataset_path")
    if isinstance(path, str) and not cfg.get("custom_dataset") and path not in _PACKAGED_DATASETS_MODULES:
        yield path, cfg.get("dataset_name")  # else: data built by the task, or local files (json, csv, ...)


def _cached(datasets, path: str, name: str | None) -> bool:
    """Whether lm-eval's load_dataset would find the dataset. Only the lookup that fails offline is
    repeated here: the builder (cache first), never the data."""
    try:
        datasets.load_dataset_builder(path, name)
    except (ConnectionError, FileNotFoundError):  # what datasets raises offline for what it has not cached
        return False
    except Exception:  # noqa: BLE001 - anything else is lm-eval's to meet, and to report as it does
        return True
    return True
