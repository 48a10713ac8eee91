"""A user's own lm-eval task folder (``--tasks-dir``): its tasks, groups and tags, as Benchmarks.

lm-eval knows three kinds of name: a *task* (a YAML with ``task: name``), a *group* (``group:
name`` with a ``task:`` list, and usually an ``aggregate_metric_list``, as lm-eval's own
``mmlu``), and a *tag* (``tag:`` on a task: a label naming several tasks). A group with an
aggregate is one benchmark, scored on its first aggregate metric (lm-eval reports it under
``groups``); a tag, or a group without an aggregate, stands for its member tasks. Everything is
parsed here, before any model loads, so a broken file is named instead of surfacing as
"task not found" after the weights are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lm_eval.api.registry import is_higher_better

from glu_ray.errors import GluRayError, first_line
from glu_ray.evaluation.benchmark import Benchmark


@dataclass(frozen=True)
class TaskFolder:
    root: str
    tasks: dict[str, Benchmark]  # every task defined in the folder
    groups: dict[str, Benchmark]  # groups with an aggregate metric
    members: dict[str, tuple[str, ...]]  # group or tag -> member names (tasks, groups, lm-eval built-ins)
    top: tuple[str, ...]  # what the folder runs when no task is named: groups and ungrouped tasks

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted({*self.tasks, *self.groups, *self.members}))

    def within(self, group: str) -> set[str]:
        """Every name a group (or tag) includes, through nested groups."""
        out: set[str] = set()
        todo = list(self.members.get(group, ()))
        while todo:
            name = todo.pop()
            if name not in out:
                out.add(name)
                todo += self.members.get(name, ())
        return out

    def check_overlap(self, tasks: tuple[str, ...]) -> None:
        """lm-eval refuses a task asked for alone and inside a group in the same run: say so first."""
        for group in (t for t in tasks if t in self.groups):
            inside = sorted(self.within(group) & (set(tasks) - {group}))
            if inside:
                raise GluRayError(f"{', '.join(inside)} already run as part of group {group!r} (each task's results "
                                  "are in the output's lm_eval section): select the group or its tasks, not both")

    def expand(self, name: str, _seen: tuple[str, ...] = ()) -> tuple[Benchmark, ...]:
        """The Benchmarks ``name`` stands for; () when the folder does not define it."""
        if name in self.tasks:
            return (self.tasks[name],)
        if name in self.groups:
            return (self.groups[name],)
        if name in _seen:
            raise GluRayError(f"lm-eval task folder {self.root}: groups/tags include each other in a loop: {' -> '.join(_seen)}")
        out = []
        for member in self.members.get(name, ()):
            found = self.expand(member, _seen + (name,))
            if not found:
                raise GluRayError(f"lm-eval task folder {self.root}: {name!r} includes {member!r}, which is not a task of the "
                                  "folder (a group without aggregate_metric_list is run task by task)")
            out += [b for b in found if b not in out]
        return tuple(out)


def read_task_dir(tasks_dir: str) -> TaskFolder:
    """Parse every task YAML under ``tasks_dir``; a file that does not parse is a GluRayError."""
    from lm_eval.tasks._yaml_loader import (
        load_yaml,  # lazy: lm_eval.tasks costs ~0.9 s at import (python -X importtime, shared CPU)
    )

    root = Path(tasks_dir).expanduser()
    if not root.is_dir():
        raise GluRayError(f"lm-eval task folder {tasks_dir!r} is not a folder")
    tasks, group_cfgs, members = {}, {}, {}
    for path in sorted(root.rglob("*.y*ml")):
        try:
            cfg = load_yaml(path, resolve_func=True)
        except Exception as err:  # noqa: BLE001 - yaml errors, missing !function modules, include cycles
            raise GluRayError(f"task file {path} does not parse: {first_line(err)}") from None
        if not isinstance(cfg, dict):
            continue
        if isinstance(cfg.get("group"), str) and isinstance(cfg.get("task"), list):
            group_cfgs[cfg["group"]] = cfg
            members[cfg["group"]] = tuple(_member_name(m) for m in cfg["task"] if _member_name(m))
        elif isinstance(cfg.get("task"), str):
            tasks[cfg["task"]] = _task_benchmark(cfg)
        for tag in _as_list(cfg.get("tag")):
            name = cfg.get("task") if isinstance(cfg.get("task"), str) else cfg.get("group")
            members[tag] = tuple(dict.fromkeys([*members.get(tag, ()), name]))
    if not tasks and not group_cfgs:
        raise GluRayError(f"lm-eval task folder {tasks_dir!r} holds no task YAML (a file with `task: name`)")
    groups = {name: _group_benchmark(name, cfg, members[name], tasks) for name, cfg in group_cfgs.items()
              if cfg.get("aggregate_metric_list")}
    grouped = {m for g in group_cfgs for m in members[g]}
    top = tuple(sorted(g for g in group_cfgs if g not in grouped)) + tuple(sorted(t for t in tasks if t not in grouped))
    return TaskFolder(str(root), tasks, groups, members, top)


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value or [])


def _member_name(entry) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        return entry.get("task") if isinstance(entry.get("task"), str) else entry.get("group")
    return None


def _higher_is_better(entry: dict) -> bool:
    higher = entry.get("higher_is_better")
    if higher is None:  # not in the YAML: lm-eval's metric registry knows (perplexities are lower-better)
        higher = is_higher_better(str(entry["metric"]))
    return higher is not False


def _task_benchmark(cfg: dict) -> Benchmark:
    """A user task is scored on the first metric of its metric_list (lm-eval's own default order)."""
    metrics = cfg.get("metric_list") or [{"metric": "acc"}]
    first = metrics[0] if isinstance(metrics[0], dict) else {"metric": str(metrics[0])}
    filters = cfg.get("filter_list") or []
    return Benchmark(
        name=cfg["task"], task=cfg["task"], num_fewshot=int(cfg.get("num_fewshot") or 0),
        metric=str(first["metric"]), higher_is_better=_higher_is_better(first),
        chance=None, capability="custom", stage="full",
        filter=filters[0].get("name", "none") if filters else "none",
    )


def _group_benchmark(name: str, cfg: dict, members: tuple[str, ...], tasks: dict[str, Benchmark]) -> Benchmark:
    """A group is scored on its first aggregate metric; its few-shot count is its members' own."""
    first = cfg["aggregate_metric_list"][0]
    first = first if isinstance(first, dict) else {"metric": str(first)}
    shots = {m: tasks[m].num_fewshot for m in members if m in tasks}
    if len(set(shots.values())) > 1:
        raise GluRayError(f"group {name!r}: its tasks have different num_fewshot ({', '.join(f'{m}: {k}' for m, k in shots.items())}); "
                          f"set one for the group with --num_fewshot {name}=K")
    filters = _as_list(first.get("filter_list"))
    return Benchmark(
        name=name, task=name, num_fewshot=next(iter(shots.values()), int(cfg.get("num_fewshot") or 0)),
        metric=str(first["metric"]), higher_is_better=_higher_is_better(first),
        chance=None, capability="custom", stage="full", filter=filters[0] if filters else "none",
    )
