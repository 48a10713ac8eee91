"""Benchmark suites as data: ``glu_ray/evaluation/suites/*.yaml`` loaded into validated, frozen dataclasses.

A suite YAML holds ``name``, ``apply_chat_template``, ``max_length``, optional ``tasks_dir``
(an lm-eval include path, relative to the YAML) and ``benchmarks``; ``extends: other`` starts from
another suite's benchmarks, ``drop: [names]`` removes some of them. Everything is checked here, before
any model loads, so a typo costs milliseconds rather than a GPU hour.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import yaml

from glu_ray.errors import GluRayError
from glu_ray.vocab import metric_key

SUITES_DIR = Path(__file__).resolve().parent / "suites"
SPLIT_SIZES = Path(__file__).resolve().parent / "split_sizes.yaml"
SUITES = ("base", "instruct", "study", "tiny")
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
        if not self.name or "," in self.name or "/" in self.name:
            problems.append(f"name {self.name!r} must be non-empty, without ',' or '/'")
        if problems:
            raise GluRayError(f"benchmark {self.name or '?'}: " + "; ".join(problems))

    @property
    def key(self) -> str:
        """The primary metric's flat name in EvalResult.metrics, e.g. ``gsm8k_cot/exact_match.strict-match``."""
        return metric_key(self.name, self.metric, self.filter)


@dataclass(frozen=True)
class Suite:
    name: str
    benchmarks: tuple[Benchmark, ...]
    apply_chat_template: bool
    tasks_dir: str | None  # include_path for lm-eval's TaskManager
    max_length: int | None  # fixed context for HFLM so perplexities are comparable across trials

    def stage(self, name: str) -> tuple[Benchmark, ...]:
        if name not in STAGES:
            raise GluRayError(f"unknown stage {name!r}; valid stages: {', '.join(STAGES)}")
        return tuple(b for b in self.benchmarks if b.stage == name)

    def get(self, name: str) -> Benchmark:
        for b in self.benchmarks:
            if b.name == name:
                return b
        raise GluRayError(f"suite {self.name!r} has no benchmark {name!r}; it has: {', '.join(self.names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.benchmarks)


_BENCH_FIELDS = {f.name for f in fields(Benchmark)}
_REQUIRED = {"name", "task", "num_fewshot", "metric", "higher_is_better", "chance", "capability", "stage"}


def _benchmark(entry: dict, where: str) -> Benchmark:
    if not isinstance(entry, dict):
        raise GluRayError(f"{where}: each benchmark must be a mapping, got {entry!r}")
    unknown = set(entry) - _BENCH_FIELDS
    missing = _REQUIRED - set(entry)
    if unknown or missing:
        raise GluRayError(f"{where}: benchmark {entry.get('name', '?')!r} has unknown keys "
                          f"{sorted(unknown)} / missing keys {sorted(missing)}")
    extra = tuple(entry.get("extra_metrics") or ())
    return Benchmark(**{**entry, "extra_metrics": extra})


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise GluRayError(f"cannot read suite {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict) or "name" not in data:
        raise GluRayError(f"suite {path} must be a mapping with at least `name` and `benchmarks`")
    return data


def _resolve(path: Path, seen: tuple[str, ...] = ()) -> Suite:
    data = _read_yaml(path)
    where = str(path)
    benchmarks: list[Benchmark] = []
    parent = None
    if data.get("extends"):
        if data["extends"] in seen:
            raise GluRayError(f"{where}: suites extend each other in a loop: {' -> '.join(seen)}")
        parent = _resolve(_suite_path(data["extends"], relative_to=path.parent), seen + (data["name"],))
        drop = set(data.get("drop") or ())
        if drop - set(parent.names):
            raise GluRayError(f"{where}: cannot drop {sorted(drop - set(parent.names))}; "
                              f"{parent.name} has {', '.join(parent.names)}")
        benchmarks = [b for b in parent.benchmarks if b.name not in drop]
    benchmarks += [_benchmark(e, where) for e in data.get("benchmarks") or ()]
    names = [b.name for b in benchmarks]
    if len(set(names)) != len(names):
        raise GluRayError(f"{where}: duplicate benchmark names in {names}")
    if not benchmarks:
        raise GluRayError(f"{where}: suite has no benchmarks")
    tasks_dir = data.get("tasks_dir")
    if tasks_dir is not None:
        tasks_dir = str((path.parent / tasks_dir).resolve())
    elif parent is not None:
        tasks_dir = parent.tasks_dir
    max_length = data.get("max_length", parent.max_length if parent else None)
    chat = data.get("apply_chat_template", parent.apply_chat_template if parent else False)
    return Suite(data["name"], tuple(benchmarks), bool(chat), tasks_dir, max_length)


def _suite_path(name_or_path: str, relative_to: Path = SUITES_DIR) -> Path:
    if name_or_path in SUITES:
        return SUITES_DIR / f"{name_or_path}.yaml"
    path = Path(name_or_path).expanduser()
    if not path.is_absolute() and not path.exists():
        path = relative_to / path
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise GluRayError(f"unknown suite {name_or_path!r}; valid suites: {', '.join(SUITES)} (or a suite .yaml file)")


def load_suite(name_or_path: str, *, tasks: Sequence[str] | None = None, tasks_dir: str | None = None) -> Suite:
    """A validated suite: a built-in name (see SUITES) or a suite YAML path.

    ``tasks`` keeps only those benchmarks, in the given order; with ``tasks_dir`` (a user's lm-eval
    task folder, which must parse) a name may also be a task defined there, scored on its first metric.
    """
    suite = _resolve(_suite_path(name_or_path))
    if tasks_dir is not None:
        user_tasks = read_task_dir(tasks_dir)
        suite = replace(suite, tasks_dir=str(Path(tasks_dir).resolve()))
    else:
        user_tasks = {}
    if tasks is None:
        return suite
    chosen = []
    for name in tasks:
        if name in suite.names:
            chosen.append(suite.get(name))
        elif name in user_tasks:
            chosen.append(user_tasks[name])
        else:
            valid = list(suite.names) + sorted(user_tasks)
            raise GluRayError(f"unknown task {name!r} for suite {suite.name!r}; valid: {', '.join(valid)}")
    if not chosen:
        raise GluRayError("no tasks selected")
    return replace(suite, benchmarks=tuple(chosen))


def read_task_dir(tasks_dir: str) -> dict[str, Benchmark]:
    """Parse every task YAML under a user's lm-eval task folder; {task name: Benchmark}.

    lm-eval's own index skips YAMLs it cannot parse without a word, so a broken file would surface
    only as "task not found" after the model loaded; here it fails first, naming the file.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    root = Path(tasks_dir).expanduser()
    if not root.is_dir():
        raise GluRayError(f"--tasks-dir {tasks_dir!r} is not a folder")
    found: dict[str, Benchmark] = {}
    for path in sorted(root.rglob("*.y*ml")):
        try:
            cfg = load_yaml(path, resolve_func=True)
        except Exception as err:  # yaml errors, missing !function modules, include cycles
            raise GluRayError(f"task file {path} does not parse: {str(err).splitlines()[0]}") from None
        if isinstance(cfg.get("task"), str):
            found[cfg["task"]] = _user_benchmark(cfg)
    if not found:
        raise GluRayError(f"--tasks-dir {tasks_dir!r} holds no lm-eval task YAML (a file with `task: name`)")
    return found


def _user_benchmark(cfg: dict) -> Benchmark:
    """A user task is scored on the first metric of its metric_list (lm-eval's own default order)."""
    metrics = cfg.get("metric_list") or [{"metric": "acc"}]
    first = metrics[0] if isinstance(metrics[0], dict) else {"metric": str(metrics[0])}
    filters = cfg.get("filter_list") or []
    higher = first.get("higher_is_better")
    if higher is None:  # not in the YAML: lm-eval's metric registry knows (perplexities are lower-better)
        from lm_eval.api.registry import is_higher_better

        higher = is_higher_better(str(first["metric"]))
    return Benchmark(
        name=cfg["task"], task=cfg["task"], num_fewshot=int(cfg.get("num_fewshot") or 0),
        metric=str(first["metric"]), higher_is_better=higher is not False,
        chance=None, capability="custom", stage="full",
        filter=filters[0].get("name", "none") if filters else "none",
    )


@functools.lru_cache(maxsize=1)
def split_items() -> dict[str, int]:
    """lm-eval task -> number of items in the split it scores (split_sizes.yaml)."""
    return {task: int(entry["items"]) for task, entry in yaml.safe_load(SPLIT_SIZES.read_text()).items()}
