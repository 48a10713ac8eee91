"""The codebase's shape, checked: one vocabulary module, an import graph that reads top-down."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("glu_ray", "analysis", "sweeps", "bench")  # everything but the tests
VOCAB = REPO / "glu_ray" / "vocab.py"

# Spellings that belong to glu_ray/vocab.py alone: trial statuses, result keys, the baseline's
# name, MLflow tag names. (lm-eval's own filter name "none" is lm-eval's vocabulary, not ours.)
_Q = "[\"']"
STRAY = {
    "a trial status": re.compile(r"([\"'])(completed|failed|running|pending|stopped: catastrophic)\1"),
    "a status matched by prefix": re.compile(rf"startswith\({_Q}stopped"),
    "a stage-0 / timing key": re.compile(rf"{_Q}(ppl|trial|eval)/\w|ratio_to_baseline"),
    "the baseline's name": re.compile(r"([\"'])baseline\1|metric\w* or [\"']none[\"']"),
    "an identity key": re.compile(rf"{_Q}trial_key{_Q}"),
    "an MLflow tag name": re.compile(rf"{_Q}glu_ray\.(role|status|trial_key|error|report|trial_config){_Q}"),
}


def _product_files():
    for top in PRODUCT:
        yield from sorted((REPO / top).rglob("*.py"))


def test_no_status_key_or_baseline_spelling_outside_vocab():
    found = []
    for path in _product_files():
        if path == VOCAB:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(REPO)}:{n}: {what}: {line.strip()}"
                      for what, rx in STRAY.items() if rx.search(line)]
    assert not found, "spell these through glu_ray.vocab:\n" + "\n".join(found)


def test_the_grep_would_catch_a_stray_spelling():
    samples = ['status == "completed"', "x.startswith('stopped')", 'row["ppl/word_perplexity"]',
               'cfg.metric or "none"', 'method="baseline"', 'tags["glu_ray.status"]', 'd["trial_key"]']
    assert all(any(rx.search(s) for rx in STRAY.values()) for s in samples)
    assert not any(rx.search('filter: str = "none"') for rx in STRAY.values())


# ---------------------------------------------------------------- the import graph

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, module_level: bool) -> set[str]:
    """Modules ``path`` imports (``from a.b import c`` counts as a.b and a.b.c when that is a
    module); module_level: only what runs at import time (not inside a function)."""
    import ast

    tree = ast.parse(path.read_text())
    nodes = []

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            nodes.append(child)
            walk(child)

    walk(tree)
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _graph(package: str, *, module_level: bool = True) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}
    return {name: {m for m in _imports(path, module_level=module_level) if m in files} - {name}
            for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_only_the_cli_imports_analysis_not_even_inside_a_function():
    """analysis/ sits above glu_ray (it reads glu_ray's vocabulary and configs): the sweep never
    imports it, lazily or not; the CLI writes the report after the sweep returns."""
    offenders = {_module_name(p): sorted(m for m in _imports(p, module_level=False) if m.split(".")[0] == "analysis")
                 for p in (REPO / "glu_ray").rglob("*.py") if not _module_name(p).startswith("glu_ray.cli")}
    assert not {k: v for k, v in offenders.items() if v}


def _package(module: str) -> str:
    """glu_ray.sweep.driver -> glu_ray.sweep; top-level modules (glu_ray.vocab) stand for themselves."""
    return ".".join(module.split(".")[:2])


def _package_graph() -> dict[str, set[str]]:
    """glu_ray's packages and what each imports, function-level imports included."""
    out: dict[str, set[str]] = {}
    for module, deps in _graph("glu_ray", module_level=False).items():
        out.setdefault(_package(module), set()).update(_package(d) for d in deps)
    return {k: v - {k} for k, v in out.items()}


# Upward edges that stay, each for a reason: a tiny model built in code for the tests and presets
# carries its calibration spec (models/tiny.py, the tiny preset's data, not the core's).
KNOWN_UPWARD = {("glu_ray.models", "glu_ray.pruning")}


def test_no_package_imports_another_that_imports_it_back():
    """sweep -> tracking -> trials, never tracking -> sweep; cost below sweep; pruning never
    reaches evaluation (calibration text comes from glu_ray.text)."""
    graph = _package_graph()
    for a, b in KNOWN_UPWARD:
        graph[a].discard(b)
    assert _cycles(graph) == []
    assert "glu_ray.sweep" not in graph["glu_ray.tracking"] | graph["glu_ray.trials"] | graph["glu_ray.cost"]
    assert "glu_ray.tracking" not in graph["glu_ray.trials"]
    assert "glu_ray.evaluation" not in graph["glu_ray.pruning"]


def test_the_package_graph_sees_a_lazy_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from analysis import x\n    import glu_ray.sweep.driver\n")
    assert {"analysis", "analysis.x", "glu_ray.sweep.driver"} <= _imports(path, module_level=False)
    assert not _imports(path, module_level=True)


def test_no_import_cycle_inside_glu_ray():
    assert _cycles(_graph("glu_ray")) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_reaches_up():
    """Models, pruning and evaluation are the core: they never import the sweep, tracking or the CLI;
    sweep results never import the trial; tracking only ever logs what the sweep wrote."""
    graph = _graph("glu_ray", module_level=False)  # function-level imports count here too
    core = ("glu_ray.models", "glu_ray.pruning", "glu_ray.evaluation", "glu_ray.vocab", "glu_ray.errors")
    upper = ("glu_ray.sweep", "glu_ray.tracking", "glu_ray.cli", "glu_ray.cost")
    bad = {m: sorted(d for d in deps if d.startswith(upper)) for m, deps in graph.items() if m.startswith(core)}
    assert not {m: d for m, d in bad.items() if d}
    assert "glu_ray.sweep.trial" not in graph["glu_ray.sweep.results"]
    tracking = {m: _imports(REPO / (m.replace(".", "/") + ".py"), module_level=False)
                for m in graph if m.startswith("glu_ray.tracking.")}
    assert not {m for m, deps in tracking.items() if any(d.split(".")[0] == "analysis" for d in deps)}
