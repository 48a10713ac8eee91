"""The real-model presets of sweeps/full_grid.py resolve to the grids the README promises, offline:
SmolLM2's hub id answered by a tiny config (sizes are read from the config, never the name)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import tiny_llama_config

from glu_ray.cli.sweep import build_parser, grid_from_args, stop_from_args
from glu_ray.sweep.grid import build_trials as _build_trials
from glu_ray.trials.stop_rule import StopRule

REPO = Path(__file__).resolve().parents[1]


SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def build_trials(grid):
    """The preset's trials; the one model's config is a tiny one, asked for by SmolLM2's hub id."""
    def config(source, **_):
        assert source == SMOLLM2
        return tiny_llama_config()

    return _build_trials(grid, load_config=config)


@pytest.fixture
def presets():
    mod_spec = importlib.util.spec_from_file_location("full_grid", REPO / "sweeps" / "full_grid.py")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return {"study": module.STUDY, "smol": module.SMOL, "demo": module.DEMO, "tiny": module.TINY}


def _grid(presets, *argv):
    args = build_parser(presets, "").parse_args(list(argv))
    return grid_from_args(args, presets[args.preset]), args


def test_smol_preset_is_issue_24s_design_in_the_measured_dtype(presets, tmp_path):
    from glu_ray.pruning.calibration import CalibrationSpec
    from glu_ray.sweep.items import ItemsByPower
    from glu_ray.sweep.width_search import WidthSearch

    smol = presets["smol"]
    assert smol.calibration == CalibrationSpec("wikitext", n_sequences=32, seq_len=256)  # WikiText-2 train, hub
    text = tmp_path / "calib.txt"  # offline here: a local file stands in for the hub's WikiText-2 train split
    text.write_text("Calibration text for the data-driven metrics.\n\n" * 50)
    grid, _ = _grid(presets, "--preset", "smol", "--calibration", str(text))
    assert grid.widths == WidthSearch(targets=(1.5, 2.0, 3.0, 5.0), max_steps=6, max_pct=50.0) and grid.targets == ()
    assert grid.control_seeds == 3 and grid.power == ItemsByPower(drop=0.05, budget_s=330.0, pilot_items=100)
    assert set(grid.metrics) == {"maw", "act", "random", "vow", "pon", "l2", "wanda_sp", "flap", "hybrid"}
    assert set(grid.stage0_only) == {"vow", "pon", "l2", "wanda_sp", "flap", "hybrid"}  # full: maw, act, random
    baselines, pruned = build_trials(grid)
    assert len(baselines) == 1 and pruned == []  # the pruned trials come from the width search, at run time
    t = baselines[0]
    assert (t.dtype, t.eval.suite, t.eval.limit, t.eval.ppl_max_docs, t.eval.max_length) == \
        (None, "instruct_mixed", 30, 2, 1024)  # dtype None: auto, measured where the trial runs
    assert {"mmlu", "gsm8k_cot", "wikitext"}.isdisjoint(t.eval.tasks) and "ifeval" in t.eval.tasks
    assert t.model == SMOLLM2 and t.eval.ppl_text is None  # stage 0: lm-eval's WikiText-2 from the hub
    assert t.variant == "instruct" and t.stop == StopRule()
    assert t.eval.max_gen_toks == 256  # IFEval's own 1280 new tokens would be minutes a prompt on a CPU


def test_demo_preset_and_the_stop_flags(presets):
    grid, args = _grid(presets, "--preset", "demo", "--no-early-stop")
    baselines, pruned = build_trials(grid)
    assert [t.metric for t in pruned] == ["maw", "vow", "pon"] and {round(t.width.pruning_pct) for t in pruned} == {10}
    assert pruned[0].eval.tasks == ("piqa", "hellaswag") and pruned[0].stop == StopRule.off()
    assert pruned[0].model == SMOLLM2 and pruned[0].eval.suite == "instruct_mixed" and pruned[0].eval.ppl_text is None
    grid, _ = _grid(presets, "--preset", "demo", "--stop-reference", "control", "--threshold", "4")
    assert grid.stop == StopRule(reference="control", threshold=4.0)
    _, args = _grid(presets, "--preset", "demo")
    assert stop_from_args(args, presets["demo"]) == presets["demo"].stop


def test_widths_auto_replaces_the_fixed_grid_and_a_preset_can_default_to_it(presets):
    from dataclasses import replace

    from glu_ray.errors import GluRayError
    from glu_ray.sweep.width_search import DEFAULT_TARGETS, WidthSearch

    grid, _ = _grid(presets, "--preset", "demo", "--widths", "auto")  # a preset with fixed widths
    assert grid.widths == WidthSearch() and grid.widths.targets == DEFAULT_TARGETS and grid.targets == ()
    baselines, pruned = build_trials(grid)
    assert len(baselines) == 1 and pruned == []  # the pruned trials come from the search, at run time
    grid, _ = _grid(presets, "--preset", "demo", "--widths", "auto", "--width-targets", "5,2")
    assert grid.widths.targets == (2.0, 5.0)
    with pytest.raises(GluRayError, match="--widths auto"):
        _grid(presets, "--preset", "demo", "--width-targets", "2")
    with pytest.raises(SystemExit):  # one way to say the widths
        _grid(presets, "--preset", "demo", "--widths", "auto", "--pruning-pcts", "10")
    auto = {**presets, "demo": replace(presets["demo"], widths=WidthSearch(targets=(1.5,)))}
    assert _grid(auto, "--preset", "demo")[0].widths.targets == (1.5,)
    assert _grid(auto, "--preset", "demo", "--pruning-pcts", "10")[0].widths is None  # the flags win
    assert _grid(auto, "--preset", "demo", "--widths", "fixed")[0].widths is None
    assert _grid(presets, "--preset", "smol", "--width-targets", "5,2")[0].widths.targets == (2.0, 5.0)  # its own


@pytest.mark.parametrize("name", ["smol", "demo"])
def test_no_preset_on_the_local_hub_asks_for_arc_easy(presets, name):
    """The local hub (../shared) has no ARC-Easy items: `--suite small` opts in, the presets do not."""
    grid, _ = _grid(presets, "--preset", name, "--metrics", "maw")  # static: no calibration text to fetch
    assert all("arc_easy" not in t.eval.load_suite().names for t in build_trials(grid)[0])
