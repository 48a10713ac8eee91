"""The real-model presets of sweeps/full_grid.py resolve to the grids the README promises, offline:
the `smollm2` alias answered by a tiny model in a temporary cache, the shared text by a stub."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import save_tiny_model

from glu_ray.cli.sweep import build_parser, grid_from_args, stop_from_args
from glu_ray.errors import GluRayError
from glu_ray.evaluation.benchmarks import wikitext_file
from glu_ray.models.fetch import PROVENANCE, get_fetchable, model_dir
from glu_ray.sweep.grid import build_trials
from glu_ray.trials.stop_rule import StopRule

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def presets(tmp_path, monkeypatch):
    monkeypatch.setenv("GLU_RAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GLU_RAY_SHARED", str(tmp_path / "shared"))
    text = tmp_path / "shared" / "assets" / "text" / "wikitext2_raw_test.txt"
    text.parent.mkdir(parents=True)
    text.write_text(" = A = \n some words \n")
    spec = get_fetchable("smollm2")
    folder = save_tiny_model(model_dir(spec))
    (folder / PROVENANCE).write_text(json.dumps({"model": spec.name}))
    mod_spec = importlib.util.spec_from_file_location("full_grid", REPO / "sweeps" / "full_grid.py")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    found = {"study": module.STUDY, "smol": module.SMOL, "demo": module.DEMO, "tiny": module.TINY}
    return found, text, folder


def _grid(presets, *argv):
    found, _, _ = presets
    args = build_parser(found, "").parse_args(list(argv))
    return grid_from_args(args, found[args.preset]), args


def test_smol_preset_is_five_metrics_by_three_widths_in_the_measured_dtype(presets):
    grid, _ = _grid(presets, "--preset", "smol")
    baselines, pruned = build_trials(grid)
    assert len(baselines) == 1 and len(pruned) == 15
    assert {t.metric for t in pruned} == {"maw", "vow", "pon", "l2", "random"}
    assert {round(t.width.pruning_pct) for t in pruned} == {10, 30, 50}
    t = pruned[0]
    assert (t.dtype, t.eval.suite, t.eval.limit, t.eval.ppl_max_docs, t.eval.max_length) == \
        (None, "real_instruct", 30, 6, 1024)  # dtype None: auto, measured where the trial runs
    assert t.eval.ppl_text == str(presets[1]) and t.variant == "instruct" and t.stop == StopRule()


def test_demo_preset_and_the_stop_flags(presets):
    grid, args = _grid(presets, "--preset", "demo", "--no-early-stop")
    baselines, pruned = build_trials(grid)
    assert [t.metric for t in pruned] == ["maw", "vow", "pon"] and {round(t.width.pruning_pct) for t in pruned} == {10}
    assert pruned[0].eval.tasks == ("piqa", "hellaswag") and pruned[0].stop == StopRule.off()
    grid, _ = _grid(presets, "--preset", "demo", "--stop-reference", "control", "--threshold", "4")
    assert grid.stop == StopRule(reference="control", threshold=4.0)
    _, args = _grid(presets, "--preset", "demo")
    assert stop_from_args(args, presets[0]["demo"]) == presets[0]["demo"].stop


def test_missing_shared_text_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GLU_RAY_SHARED", str(tmp_path))
    with pytest.raises(GluRayError, match="WikiText-2 text not found"):
        wikitext_file()
