"""Items by power (glu_ray/evaluation/power.py): the formula on known values, the plan within its budget."""

from __future__ import annotations

import math

import pytest

from glu_ray.evaluation.power import (FLOOR, TaskCost, above_chance, detectable_drop, items_needed, lead_items,
                                      plan_items)


def test_items_needed_is_two_proportions_at_z_stderrs():
    assert items_needed(0.5, 0.05) == 800  # 2 * 4 * 0.25 / 0.0025
    assert items_needed(0.5, 0.05, z=1.96) == 769  # ceil(768.32)
    assert items_needed(0.9, 0.1) == 72
    assert detectable_drop(0.5, 800) == pytest.approx(0.05)
    assert detectable_drop(0.9, 72) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="drop"):
        items_needed(0.5, 0.0)


def test_above_chance_by_z_stderrs_and_perplexities_always_count():
    assert above_chance(0.40, 0.25, 0.05)  # 0.15 > 0.10
    assert not above_chance(0.33, 0.25, 0.05)  # 0.08 <= 0.10
    assert not above_chance(0.20, 0.25, 0.0)
    assert above_chance(12.0, None, 1.0) and above_chance(12.0, math.nan, 1.0)
    assert above_chance(0.3, 0.25, None)


def test_unbounded_plan_sizes_each_task_for_the_drop_and_caps_at_its_split():
    costs = [TaskCost("hellaswag", 0.5, 0.25, 1.0, 10042), TaskCost("piqa", 0.9, 0.5, 1.0, 50),
             TaskCost("wikitext", 30.0, None, 1.0, 62)]
    plan = plan_items(costs, 0.05)
    t = {x.name: x for x in plan.tasks}
    assert t["hellaswag"].items == 800 and t["hellaswag"].drop == pytest.approx(0.05)
    assert t["piqa"].items == 50 and "all 50 items" in t["piqa"].why  # 288 wanted, 50 exist
    assert t["wikitext"].limit is None and "not a proportion" in t["wikitext"].why
    assert plan.limits() == (("hellaswag", 800), ("piqa", 50))
    assert plan.reached_drop == 0.05 and not plan.left_out


def test_a_binding_budget_gives_every_task_the_same_larger_drop_and_fits():
    costs = [TaskCost("a", 0.5, 0.25, 2.0, 5000), TaskCost("b", 0.7, 0.25, 0.5, 5000)]
    plan = plan_items(costs, 0.05, budget_s=600)
    assert plan.seconds <= 600 + 2.0  # within one item of the budget
    assert plan.seconds > 0.95 * 600  # and spends it
    drops = [t.drop for t in plan.tasks]
    assert plan.reached_drop > 0.05 and drops == pytest.approx([plan.reached_drop] * 2, rel=0.02)
    assert "sized for a drop of" in plan.tasks[0].why
    assert "budget 600 CPU-s" in plan.table() and "a  " in plan.table()


def test_a_task_not_above_chance_at_its_items_is_left_out_and_gets_the_floor():
    # mmlu-like: 0.27 vs chance 0.25 needs ~2000 items to clear 2 stderrs; a group of 57 subjects.
    costs = [TaskCost("mmlu", 0.27, 0.25, 1.0, 14042, items_per_unit=57), TaskCost("arc", 0.6, 0.25, 1.0, 1172),
             TaskCost("ifeval", 0.0, 0.0, 10.0, 541)]
    plan = plan_items(costs, 0.05, budget_s=1500)
    t = {x.name: x for x in plan.tasks}
    assert plan.left_out == ("mmlu", "ifeval")
    assert t["mmlu"].items == 57 and t["mmlu"].limit == 1  # the floor, in whole units of lm-eval's limit
    assert t["ifeval"].items == FLOOR and "not above chance by 2 stderrs" in t["ifeval"].why
    # what the left-out tasks do not spend goes to the rest
    assert t["arc"].items == items_needed(0.6, 0.05) and plan.seconds <= 1500


def test_a_task_gets_the_items_its_lead_over_chance_needs_where_the_budget_allows():
    """SmolLM2's pilot (the smol run, 30 items a task): WinoGrande's small lead is cheap to show;
    IFEval's costs 2.25 CPU-s an item but fits. Planned by the drop alone, both were left out."""
    pilot = [TaskCost("piqa", 0.667, 0.5, 0.113, 300), TaskCost("winogrande", 0.567, 0.5, 0.068, 300),
             TaskCost("lambada", 0.233, 0.0, 0.110, 300), TaskCost("ifeval", 0.1, 0.0, 2.25, 541),
             TaskCost("hellaswag", 0.1, 0.25, 0.207, 300)]
    plan = plan_items(pilot, 0.05, budget_s=200)
    t = {x.name: x for x in plan.tasks}
    assert plan.left_out == ("hellaswag",) and plan.seconds <= 200 + 2.25
    assert lead_items(0.567, 0.5) == 219 and t["winogrande"].items == 219 and "lead over chance" in t["winogrande"].why
    for x in (t["winogrande"], t["ifeval"], t["piqa"]):  # every task kept is above chance at its items
        assert above_chance(x.score, x.chance, math.sqrt(x.score * (1 - x.score) / x.items))
    assert lead_items(0.25, 0.25) is None and lead_items(0.26, 0.25) is None  # a lead of MIN_LEAD or less
    # Leads the budget cannot pay: the costliest goes first; a lead the split cannot show is out at once.
    tight = plan_items(pilot, 0.05, budget_s=80)  # IFEval's lead: 37 items, 83 CPU-s
    assert "ifeval" in tight.left_out and "winogrande" not in tight.left_out and tight.seconds <= 80
    assert "over the budget" in {x.name: x for x in tight.tasks}["ifeval"].why
    small = plan_items([TaskCost("w", 0.567, 0.5, 0.068, 100)], 0.05)
    assert small.left_out == ("w",) and "the split has 100" in small.tasks[0].why


def test_per_task_limits_reach_lm_eval_through_a_trials_config(tiny_model_dir, monkeypatch):
    """Two benchmarks, two limits, one stage: lm-eval scores exactly that many items of each (its own
    n-samples), from a TrialConfig that went through the dict Ray hands a trial."""
    import json

    from glu_ray.models.loading import load_model
    from glu_ray.pruning.widths import Width
    from glu_ray.sweep import trial
    from glu_ray.tracking.runs import trial_params
    from glu_ray.trials.config import EvalSpec, TrialConfig

    ev = EvalSpec(suite="tiny", tasks=("tiny_mc", "tiny_lambada"), limit=2, limits=(("tiny_mc", 3),), batch_size=4)
    cfg = TrialConfig(model=str(tiny_model_dir), model_name="tiny", metric=None, width=Width(256, 256, 64),
                      num_params=1, variant="base", eval=ev)
    back = TrialConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and hash(back.eval) == hash(ev)
    params = trial_params(back)
    assert params["limit/tiny_mc"] == "3" and params["limit"] == "2" and "limit/tiny_lambada" not in params
    monkeypatch.setattr(trial, "_documents", lambda source, max_docs: ("One day a fox found a key. " * 5,))
    model, tok = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    raw = {}
    for _ in trial.evaluate_stages(back, model, tok, on_result=lambda stage, r: raw.update(r.raw)):
        pass
    counts = {task: n["effective"] for task, n in raw["n-samples"].items()}
    assert counts == {"tiny_mc": 3, "tiny_lambada": 2}
    assert raw["glu_ray"]["limits"] == {"tiny_mc": 3}


def test_a_pilot_of_the_baseline_sizes_every_trial_of_its_model_and_a_rerun_reads_it_back(tmp_path, monkeypatch,
                                                                                          capsys):
    """size_items on a real tiny baseline: the pilot scores each task on a few items (real lm-eval),
    the plan caps each at its split (tiny_mc: 16 items), the perplexity keeps the sweep's limit, and
    a rerun plans the same limits from the ledger without measuring again."""
    from conftest import tiny_sweep_grid
    from glu_ray.evaluation import pilot
    from glu_ray.sweep import items
    from glu_ray.sweep.grid import build_trials
    from glu_ray.trials.ledger import PILOT, Ledger

    grid = tiny_sweep_grid(tmp_path)
    baselines, pruned = build_trials(grid)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    power = items.ItemsByPower(drop=0.05, pilot_items=4)
    b, p, plans = items.size_items(power, baselines, pruned, ledger)
    plan = plans[baselines[0].model]
    mc = next(t for t in plan.tasks if t.name == "tiny_mc")
    assert mc.items == 16 or mc.left_out  # 16 items exist; a tiny model near chance is left out with the floor
    assert "tiny_wikitext" not in dict(plan.limits())
    assert all(c.eval.limits == plan.limits() for c in b + p) and len(p) == len(pruned)
    out = capsys.readouterr().out
    assert "tiny-t pilot: the baseline on 4 items per task" in out and "items by power: a drop of 0.05" in out
    assert [e.kind for e in ledger.events()] == [PILOT]

    monkeypatch.setattr(pilot, "pilot_costs", lambda *a, **k: pytest.fail("measured again"))
    _, _, again = items.size_items(power, baselines, pruned, ledger, verbose=0)
    assert again == plans


def test_the_sweeps_pilots_run_as_ray_tasks_and_plan_what_the_driver_would(tmp_path, ray_cluster, capsys):
    """The sweep's pilots (pilot_tasks.py): one Ray task per benchmark, a trial's resources, the
    same scores as a pilot run here (so the same items), every task's costs in the suite's order,
    the progress line in the driver's output; a model that cannot load fails in one line."""
    from dataclasses import replace

    from conftest import tiny_sweep_grid
    from glu_ray.errors import GluRayError
    from glu_ray.sweep import items
    from glu_ray.sweep.grid import build_trials
    from glu_ray.sweep.pilot_tasks import on_ray
    from glu_ray.trials.ledger import PILOT, Ledger

    grid = tiny_sweep_grid(tmp_path)
    # fp32 both here and on the worker: `auto` measures bf16 against fp32 in each process, and on a
    # loaded machine the two can choose differently (a perplexity 1% apart), which is not this test's
    baselines, pruned = ([replace(c, dtype="float32") for c in cfgs] for cfgs in build_trials(grid))
    power = items.ItemsByPower(drop=0.05, pilot_items=4)
    asked = []
    measure = on_ray(lambda cfg: asked.append(cfg.key) or {"cpu": 1})
    _, _, here = items.size_items(power, baselines, pruned, Ledger(tmp_path / "here.jsonl"), verbose=0)
    ledger = Ledger(tmp_path / "ray.jsonl")
    _, _, on_workers = items.size_items(power, baselines, pruned, ledger, measure=measure)
    plan, ref = on_workers[baselines[0].model], here[baselines[0].model]
    assert [(t.name, t.score, t.items) for t in plan.tasks] == [(t.name, t.score, t.items) for t in ref.tasks]
    assert [t.name for t in plan.tasks] == ["tiny_mc", "tiny_wikitext"] and asked == [baselines[0].key]
    assert [e.kind for e in ledger.events()] == [PILOT]
    assert "tiny-t pilot: the baseline on 4 items per task" in capsys.readouterr().out

    lost = [replace(baselines[0], model=str(tmp_path / "gone"))]
    with pytest.raises(GluRayError) as err:
        items.size_items(power, lost, [], Ledger(tmp_path / "lost.jsonl"), verbose=0, measure=measure)
    assert "\n" not in str(err.value) and "gone" in str(err.value)


def test_the_flags_and_a_presets_default(tmp_path):
    from glu_ray.cli.sweep import Preset, build_parser, power_from_args
    from glu_ray.errors import GluRayError
    from glu_ray.sweep.items import ItemsByPower

    preset = Preset(models=(), metrics=("maw",), power=ItemsByPower(0.05, budget_s=900))
    parse = build_parser({"p": preset}, "").parse_args
    assert power_from_args(parse([]), preset) == preset.power
    assert power_from_args(parse(["--limit", "30"]), preset) is None  # items set by hand
    assert power_from_args(parse(["--items-by-power", "0.1", "--pilot-items", "10"]), preset) == \
        ItemsByPower(0.1, budget_s=900, pilot_items=10)
    with pytest.raises(GluRayError, match="add it"):
        power_from_args(parse(["--power-budget", "10"]), Preset(models=(), metrics=("maw",)))
    with pytest.raises(GluRayError, match="in \\(0, 1\\)"):
        power_from_args(parse(["--items-by-power", "5"]), preset)


def test_a_groups_pilot_is_sized_over_its_subtasks():
    """MMLU's pilot limit is per subject: its 57 subjects are counted from lm-eval's index."""
    from glu_ray.evaluation.harness import task_manager
    from glu_ray.evaluation.preflight import leaf_configs

    index = task_manager((), ("mmlu",)).task_index
    assert len(list(leaf_configs(index, "mmlu"))) == 57
    assert [c["task"] for c in leaf_configs(index, "piqa")] == ["piqa"]


def test_a_pilot_that_fails_names_the_benchmark_in_one_line(monkeypatch):
    """A fault injected on purpose: IFEval's scorer without NLTK's punkt_tab raises a LookupError
    whose text opens with a row of asterisks."""
    from glu_ray.errors import GluRayError
    from glu_ray.evaluation import pilot
    from glu_ray.evaluation.suites import load_suite

    def no_punkt(*a, **k):
        raise LookupError("\n" + "*" * 70 + "\n  Resource 'punkt_tab' not found.\n  Please use the NLTK Downloader\n")

    monkeypatch.setattr(pilot, "run_suite", no_punkt)
    with pytest.raises(GluRayError, match="pilot failed on tiny_ifeval: LookupError: Resource 'punkt_tab' not found.$"):
        pilot.pilot_costs(None, None, load_suite("tiny", tasks=["tiny_ifeval"]), items=2)
