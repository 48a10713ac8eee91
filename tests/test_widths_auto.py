"""--widths auto end to end on a real local Ray: a tiny model's widths found from stage 0 (a Tune
Searcher's experiment of stage-0 probes), then full trials only there; deterministic, resumable.

Tolerance: widths are integers, so a target is met only as closely as one neuron allows. The
bisection ends with a one-neuron bracket (128 neurons, 8 probes per target), so the test checks
exactly that: the width chosen and its neighbour on the other side of the target were both
measured, and the one chosen is the closer of the two (in log ratio). As a number: on this model
one neuron moves the stage-0 ratio by under 1% near these targets (e.g. 15 -> 16 neurons kept:
ppl 7.90e5 -> 7.86e5), so the chosen ratio is within 3% of its target; a wider miss means the
bisection did not converge.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest

from conftest import tiny_sweep_grid
from glu_ray.sweep.driver import SweepOptions, run_sweep
from glu_ray.sweep.width_search import WidthSearch
from glu_ray.trials.ledger import CHOICE, SEARCH, Ledger

pytestmark = pytest.mark.slow
# The tiny model (40 training steps) is fragile only so far: 95% pruned is ~1.4x its baseline, so
# two targets below that and one (2x) it never reaches, which must be reported, not looped on.
REACHABLE, UNREACHABLE = (1.1, 1.3), 2.0
TARGETS = (*REACHABLE, UNREACHABLE)


def auto_grid(root: Path):
    grid = tiny_sweep_grid(root)
    return replace(grid, metrics=("maw",), targets=(), widths=WidthSearch(targets=TARGETS),
                   eval=replace(grid.eval, tasks=("tiny_mc",)))


def widths_of(result) -> list[tuple[float, int]]:
    return [(c.width_choice.target_ratio, c.width.width) for c in result.trials if not c.is_baseline]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("auto")
    grid = auto_grid(root)
    first = run_sweep(grid, SweepOptions(name="auto", storage=str(root / "a"), verbose=0))
    events = len(Ledger(first.experiment_dir / "ledger.jsonl").events())
    again = run_sweep(grid, SweepOptions(name="auto", storage=str(root / "a"), verbose=0))  # a rerun: resumes
    other = run_sweep(grid, SweepOptions(name="auto", storage=str(root / "b"), verbose=0))  # from scratch
    return first, events, again, other


def test_full_trials_run_only_at_the_widths_found_each_near_its_target(runs):
    first, _, _, _ = runs
    assert first.finished
    ledger = Ledger(first.experiment_dir / "ledger.jsonl")
    probes = {e.key: e.data["ppl/word_perplexity"] for e in ledger.events() if e.kind == SEARCH}
    base = next(c for c in first.trials if c.is_baseline)
    base_ppl = first.rows[base.key]["ppl/word_perplexity"]
    pruned = [c for c in first.trials if not c.is_baseline]
    assert pruned and len(pruned) == len({c.width.width for c in pruned})  # one trial per width found
    assert {c.width_choice.target_ratio for c in pruned} <= set(REACHABLE)
    for cfg in pruned:
        t, w, r = cfg.width_choice.target_ratio, cfg.width.width, cfg.width_choice.search_ratio
        neighbours = {w - 1, w + 1}
        keys = {n: replace(cfg, width=replace(cfg.width, width=n)).key for n in neighbours}
        measured = {n: probes[k] / base_ppl for n, k in keys.items() if k in probes}
        other = [n for n, rn in measured.items() if (rn >= t) != (r >= t)]  # across the target
        assert other, f"{cfg.name}: no measured neighbour across {t}x ({measured})"
        assert abs(math.log(r / t)) <= abs(math.log(measured[other[0]] / t)) + 1e-12
        assert abs(r / t - 1) < 0.03, (cfg.name, t, r)
        assert first.rows[cfg.key]["status"] == "completed"  # the full trial ran there


def test_the_same_command_gives_the_same_widths_and_a_rerun_logs_nothing_twice(runs):
    first, events, again, other = runs
    assert widths_of(first) == widths_of(other) == widths_of(again)
    ledger = Ledger(first.experiment_dir / "ledger.jsonl")
    assert len(ledger.events()) == events  # no probe rerun, no choice recorded again
    kinds = [e.kind for e in ledger.events()]
    assert kinds.count(CHOICE) == len(TARGETS)


def test_mlflow_records_how_each_width_was_chosen(runs):
    first, _, _, _ = runs
    client = mlflow.MlflowClient(first.tracking_uri)
    exp = client.get_experiment_by_name(first.experiment)
    runs_ = client.search_runs([exp.experiment_id], "tags.`glu_ray.role` = 'trial'")
    chosen = {r.data.params["width"]: r.data.params for r in runs_ if r.data.params.get("metric") != "baseline"}
    assert set(chosen) == {str(c.width.width) for c in first.trials if not c.is_baseline}
    for params in chosen.values():
        assert float(params["width_target_ratio"]) in REACHABLE and int(params["width_search_steps"]) >= 1
        assert "width_search_ratio" in params
    sweep = client.search_runs([exp.experiment_id], "tags.`glu_ray.role` = 'sweep'")[0]
    record = json.loads(Path(client.download_artifacts(sweep.info.run_id, "width_search.json")).read_text())
    assert [f["width_target_ratio"] for f in record[0]["found"]] == list(TARGETS) and record[0]["settled"]
    assert record[0]["found"][-1]["width"] is None  # 2x: unreachable, reported as such
