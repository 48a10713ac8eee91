"""Data-driven metrics in the sweep: grid checks, trial identity, the cache keyed by calibration,
MLflow params, and (slow) a real tiny sweep with maw, act, flap and hybrid side by side."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import make_tiny_tokenizer

from glu_ray import GluRayError
from glu_ray.models.tiny import build_tiny_model, tiny_calibration, tiny_eval_text
from glu_ray.pruning.calibration import CalibrationSpec
from glu_ray.pruning.widths import TargetWidth
from glu_ray.trials.config import EvalSpec, TrialConfig
from glu_ray.sweep.grid import ModelSpec, SweepGrid, build_trials
from glu_ray.sweep.ranking_cache import cached_rank

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> CalibrationSpec:
    return tiny_calibration(tmp_path_factory.mktemp("calib"))


def grid(model_dir, calib, metrics=("maw", "act", "flap"), **kw) -> SweepGrid:
    return SweepGrid(models=(ModelSpec(str(model_dir), "tiny"),), metrics=metrics,
                     targets=(TargetWidth(pruning_pct=25), TargetWidth(pruning_pct=50)),
                     eval=EvalSpec(suite="tiny"), calibration=calib, **kw)


def test_data_driven_metric_without_calibration_fails_before_any_trial(tiny_model_dir):
    with pytest.raises(GluRayError, match="'flap' is data-driven.*--calibration"):
        build_trials(grid(tiny_model_dir, None, metrics=("maw", "flap")))
    with pytest.raises(GluRayError, match="bias compensation: it needs calibration"):
        build_trials(grid(tiny_model_dir, None, metrics=("maw",), bias_compensation=True))
    with pytest.raises(GluRayError, match="pass a local text file"):
        build_trials(grid(tiny_model_dir, CalibrationSpec("wikitext"), metrics=("act",)))


def test_trials_carry_calibration_only_where_they_read_it(tiny_model_dir, calib):
    _, pruned = build_trials(grid(tiny_model_dir, calib))
    by_metric = {}
    for t in pruned:
        by_metric.setdefault(t.metric, []).append(t)
    assert all(t.calibration is None and "calib=" not in t.key for t in by_metric["maw"])
    for t in by_metric["act"] + by_metric["flap"]:
        assert t.calibration == calib and t.key.endswith(f"|calib={calib.fingerprint}")
        assert TrialConfig.from_dict(t.to_dict()) == t  # what Ray hands the trial comes back typed
    assert len({t.key for t in pruned}) == len(pruned) == 6


def test_bias_compensation_is_its_own_method(tiny_model_dir, calib):
    from glu_ray.tracking.runs import trial_params

    _, plain = build_trials(grid(tiny_model_dir, calib))
    _, comp = build_trials(grid(tiny_model_dir, calib, bias_compensation=True))
    assert {t.method for t in comp} == {"maw+bc", "act+bc", "flap+bc"}
    assert all(t.calibration == calib for t in comp)  # maw+bc needs the calibration means
    assert {t.key for t in plain}.isdisjoint({t.key for t in comp})
    assert sum(t.name.startswith("tiny-llama/flap+bc/") for t in comp) == 2
    params = trial_params(next(t for t in comp if t.metric == "flap"))
    assert params["bias_compensation"] == "True" and params["calibration_fingerprint"] == calib.fingerprint
    assert params["calibration_sequences"] == str(calib.n_sequences) and params["calibration_seed"] == "0"
    assert params["metric"] == "flap+bc"


def test_cache_ranks_once_per_model_metric_calibration_and_calibrates_once(tiny_model_dir, calib, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = make_tiny_tokenizer()[0]
    src = str(tiny_model_dir)
    act, cached = cached_rank(model, tmp_path, src, None, "act", 0, calibration=calib, tokenizer=tok)
    assert not cached and act.calibration == calib.fingerprint
    flap, cached = cached_rank(model, tmp_path, src, None, "flap", 0, calibration=calib, tokenizer=tok)
    assert not cached
    assert len(list(tmp_path.glob("*-calibration-*.pt"))) == 1  # one forward pass for both metrics
    again, cached = cached_rank(model, tmp_path, src, None, "act", 0, calibration=calib, tokenizer=tok)
    assert cached and all((a == b).all() for a, b in zip(again.scores, act.scores))
    other = CalibrationSpec(calib.source, calib.n_sequences, calib.seq_len, seed=1)
    _, cached = cached_rank(model, tmp_path, src, None, "act", 0, calibration=other, tokenizer=tok)
    assert not cached and len(list(tmp_path.glob("*-calibration-*.pt"))) == 2
    static, _ = cached_rank(model, tmp_path, src, None, "maw", 0)
    assert static.calibration is None and not static.means


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "sweeps" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_flags_and_the_tiny_preset_give_a_calibration(tmp_path, tiny_model_dir):
    from glu_ray.cli.sweep import build_parser, grid_from_args

    full = _script("full_grid")
    parser = build_parser({"tiny": full.TINY}, "")
    args = parser.parse_args(["--preset", "tiny", "--models", str(tiny_model_dir), "--suite", "tiny",
                              "--storage", str(tmp_path), "--metrics", "act"])
    g = grid_from_args(args, full.TINY)
    assert g.calibration is not None and Path(g.calibration.source).is_file()
    text = tmp_path / "c.txt"
    text.write_text("some calibration text " * 50)
    args = parser.parse_args(["--preset", "tiny", "--models", str(tiny_model_dir), "--suite", "tiny",
                              "--storage", str(tmp_path), "--calibration", str(text), "--calibration-sequences", "3",
                              "--calibration-seq-len", "20", "--calibration-seed", "7", "--bias-compensation"])
    g = grid_from_args(args, full.TINY)
    assert g.calibration == CalibrationSpec(str(text), 3, 20, 7) and g.bias_compensation


@pytest.mark.slow
def test_tiny_sweep_with_static_and_data_driven_metrics(tmp_path):
    """The issue's sweep: --metrics maw,act,flap,hybrid on the tiny preset, offline, end to end;
    the analysis report's hierarchy has a row per metric."""
    import pandas as pd

    model = build_tiny_model(tmp_path / "models" / "tiny-a", seed=0, steps=40, hidden=32, intermediate=128, layers=2)
    argv = ["--preset", "tiny", "--models", str(model), "--suite", "tiny", "--tasks", "tiny_mc,tiny_wikitext",
            "--limit", "6", "--batch-size", "4", "--pruning-pcts", "25,50", "--metrics", "maw,act,flap,hybrid",
            "--ppl-text", str(tiny_eval_text(tmp_path)), "--threshold", "1000", "--storage", str(tmp_path / "runs"),
            "--experiment", "datadriven", "--verbose", "0"]
    # Joins the session's Ray where one is up (never shut down: later tests share it).
    rc = _script("method_comparison").main({"tiny": _script("method_comparison").TINY}, argv)
    assert rc == 0
    root = tmp_path / "runs" / "datadriven"
    assert len(list((root / "rankings").glob("*-calibration-*.pt"))) == 1  # one pass for act, flap, hybrid
    assert len(list((root / "rankings").glob("*-v3.pt"))) == 4  # one ranking per metric
    hierarchy = pd.read_csv(root / "report" / "hierarchy.csv")
    assert set(hierarchy["method"]) == {"maw", "act", "flap", "hybrid"}
