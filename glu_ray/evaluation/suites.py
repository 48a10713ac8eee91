"""Benchmark suites as data: ``glu_ray/evaluation/suites/*.yaml`` loaded into validated, frozen dataclasses.

A suite YAML holds ``name``, ``apply_chat_template`` (a benchmark's own ``chat_template`` overrides
it), ``max_length``, optional ``tasks_dir``
(an lm-eval include path, relative to the YAML), ``max_gen_toks`` (a cap on every generating task)
and ``benchmarks``; ``extends: other`` starts from
another suite's benchmarks, ``drop: [names]`` removes some of them. A user's own task folder
(glu_ray.evaluation.task_folder) adds its tasks, groups and tags; ``with_fewshot`` applies few-shot
counts given on the command line. Everything is checked here, before any model loads, so a typo
costs milliseconds rather than a GPU hour.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from glu_ray.errors import GluRayError, first_line
from glu_ray.evaluation.benchmark import CAPABILITIES, STAGES, Benchmark
from glu_ray.evaluation.task_folder import TaskFolder, read_task_dir

__all__ = ["CAPABILITIES", "SUITES", "STAGES", "Benchmark", "Suite", "TaskFolder", "load_suite", "read_task_dir",
           "split_items", "with_fewshot"]

SUITES_DIR = Path(__file__).resolve().parent / "suites"
SPLIT_SIZES = Path(__file__).resolve().parent / "split_sizes.yaml"
SUITES = ("base", "instruct", "instruct_mixed", "small", "study", "tiny")
@dataclass(frozen=True)
class Suite:
    name: str
    benchmarks: tuple[Benchmark, ...]
    apply_chat_template: bool
    tasks_dirs: tuple[str, ...]  # include paths for lm-eval's TaskManager: the suite's own, then the user's
    max_length: int | None  # fixed context for HFLM so perplexities are comparable across trials
    max_gen_toks: int | None = None  # cap on new tokens of every generate_until task (None: each task's own)

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

    def chat(self, benchmark: Benchmark) -> bool:
        """Whether ``benchmark``'s prompts go through the chat template: its own setting, else the suite's."""
        return self.apply_chat_template if benchmark.chat_template is None else benchmark.chat_template

    @property
    def chat_benchmarks(self) -> tuple[str, ...]:
        """The benchmarks prompted through the chat template (a suite with any is for chat models)."""
        return tuple(b.name for b in self.benchmarks if self.chat(b))


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
        raise GluRayError(f"cannot read suite {path}: {first_line(err)}") from None
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
        tasks_dirs = (str((path.parent / tasks_dir).resolve()),)
    else:
        tasks_dirs = parent.tasks_dirs if parent is not None else ()
    max_length = data.get("max_length", parent.max_length if parent else None)
    chat = data.get("apply_chat_template", parent.apply_chat_template if parent else False)
    max_gen_toks = data.get("max_gen_toks", parent.max_gen_toks if parent else None)
    if max_gen_toks is not None and (not isinstance(max_gen_toks, int) or max_gen_toks < 1):
        raise GluRayError(f"{where}: max_gen_toks must be a positive integer, got {max_gen_toks!r}")
    return Suite(data["name"], tuple(benchmarks), bool(chat), tasks_dirs, max_length, max_gen_toks)


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

    ``tasks`` keeps only those benchmarks, in the given order. With ``tasks_dir`` (a user's lm-eval
    task folder, which must parse) a name may also be a task, group or tag defined there, and
    without ``tasks`` the folder's own tasks are run (its groups and ungrouped tasks).
    """
    suite = _resolve(_suite_path(name_or_path))
    folder = read_task_dir(tasks_dir) if tasks_dir is not None else None
    if folder is not None:
        suite = replace(suite, tasks_dirs=(*suite.tasks_dirs, str(Path(folder.root).resolve())))
        tasks = folder.top if tasks is None else tasks
    if tasks is None:
        return suite
    chosen: list[Benchmark] = []
    for name in tasks:
        found = (suite.get(name),) if name in suite.names else folder.expand(name) if folder else ()
        if not found:
            valid = list(suite.names) + list(folder.names if folder else ())
            raise GluRayError(f"unknown task {name!r} for suite {suite.name!r}; valid: {', '.join(valid)}")
        chosen += [b for b in found if b.name not in {c.name for c in chosen}]
    if not chosen:
        raise GluRayError("no tasks selected")
    if folder is not None:
        folder.check_overlap(tuple(b.task for b in chosen))
    return replace(suite, benchmarks=tuple(chosen))


def with_fewshot(suite: Suite, counts: int | Mapping[str, Sequence[int]] | None) -> Suite:
    """Few-shot counts from outside the suite (lm-eval's ``--num_fewshot``): one count for every
    benchmark, or counts per benchmark (or lm-eval task) name; a benchmark given several counts is
    evaluated once per count, as ``<name>_<k>shot``."""
    if counts is None:
        return suite
    if isinstance(counts, int):
        return replace(suite, benchmarks=tuple(replace(b, num_fewshot=counts) for b in suite.benchmarks))
    known = {b.name for b in suite.benchmarks} | {b.task for b in suite.benchmarks}
    unknown = sorted(set(counts) - known)
    if unknown:
        raise GluRayError(f"few-shot count for {', '.join(map(repr, unknown))}, which is not selected; selected: "
                          f"{', '.join(b.name for b in suite.benchmarks)}")
    out: list[Benchmark] = []
    for b in suite.benchmarks:
        ks = tuple(dict.fromkeys(counts.get(b.name) or counts.get(b.task) or ()))
        if len(ks) <= 1:
            out.append(replace(b, num_fewshot=ks[0]) if ks else b)
        else:
            out += [replace(b, name=f"{b.name}_{k}shot", num_fewshot=k) for k in ks]
    return replace(suite, benchmarks=tuple(out))


@functools.lru_cache(maxsize=1)
def split_items() -> dict[str, int]:
    """lm-eval task -> number of items in the split it scores (split_sizes.yaml)."""
    return {task: int(entry["items"]) for task, entry in yaml.safe_load(SPLIT_SIZES.read_text()).items()}
