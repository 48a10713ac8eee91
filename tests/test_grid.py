"""The grid is checked, and trials built, from configs alone, before Ray starts."""

import pytest
from transformers import LlamaConfig

from glu_ray.trials.config import EvalSpec, TrialConfig
from glu_ray.errors import GluRayError
from glu_ray.sweep.grid import ModelSpec, SweepGrid, build_trials, gpu_fraction
from glu_ray.pruning.widths import TargetWidth

PCTS = tuple(TargetWidth(pruning_pct=p) for p in (10, 20, 30, 40, 50, 60))


@pytest.fixture(scope="module")
def llama_1b_config_dir(tmp_path_factory):
    """Llama-3.2-1B's shape as a config-only folder: enough to plan a grid, no weights."""
    path = tmp_path_factory.mktemp("cfg") / "Llama-3.2-1B"
    LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True).save_pretrained(path)
    return path


def test_study_grid_widths_and_one_shared_baseline(llama_1b_config_dir):
    grid = SweepGrid((ModelSpec(str(llama_1b_config_dir), "base"),), ("maw", "vow", "pon"), PCTS)
    baselines, pruned = build_trials(grid)
    assert len(baselines) == 1 and baselines[0].is_baseline and baselines[0].width.width == 8192
    assert sorted({t.width.width for t in pruned}, reverse=True) == [7373, 6554, 5735, 4916, 4096, 3277]
    assert len(pruned) == 18 and len({t.key for t in pruned}) == 18
    t = next(t for t in pruned if t.width.width == 4916 and t.metric == "maw")
    assert t.name == "Llama-3.2-1B/maw/2.4x" and abs(t.width.pruning_pct - 39.99) < 0.01
    assert 1.2e9 < t.num_params < 1.3e9  # counted on the meta device, not guessed from the name


def test_trial_config_round_trips_through_a_flat_dict(tiny_model_dir):
    _, pruned = build_trials(SweepGrid((ModelSpec(str(tiny_model_dir), "tiny"),), ("maw",), PCTS[:1],
                                       EvalSpec(suite="tiny", tasks=("tiny_mc",))))
    cfg = pruned[0]
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "models, metrics, targets, match",
    [
        (("/nonexistent/model",), ("maw",), PCTS, "not a model"),
        ((None,), ("magic",), PCTS, "unknown importance metric 'magic'; valid: act, flap, hybrid, l2, maw, pon, random, vow, wanda_sp"),
        ((None,), ("maw",), (TargetWidth(expansion_ratio=9.0),), "expansion ratio must be in"),
        ((None,), ("maw",), (TargetWidth(pruning_pct=100),), "pruning percentage must be in"),
    ],
)
def test_bad_grids_fail_before_any_trial(tiny_model_dir, models, metrics, targets, match):
    specs = tuple(ModelSpec(m or str(tiny_model_dir), "tiny") for m in models)
    with pytest.raises(GluRayError, match=match):
        build_trials(SweepGrid(specs, metrics, targets))


def test_unknown_suite_is_rejected(tiny_model_dir):
    with pytest.raises(GluRayError, match="unknown suite"):
        build_trials(SweepGrid((ModelSpec(str(tiny_model_dir), "nosuch"),), ("maw",), PCTS))


def test_non_glu_model_is_rejected(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(GluRayError, match="not a GLU model.*gate_proj"):
        build_trials(SweepGrid((ModelSpec(str(tmp_path / "gpt2"), "tiny"),), ("maw",), PCTS))


def test_gpu_fraction_follows_model_size():
    gb80 = 80 * 2**30
    assert gpu_fraction(1_236_000_000, gb80) == 0.25
    assert gpu_fraction(3_213_000_000, gb80) == 0.5
    assert gpu_fraction(8_000_000_000, gb80) == 1.0
    assert gpu_fraction(1_236_000_000, 141 * 2**30) == 0.125


def test_local_paths_become_absolute_because_trials_run_elsewhere(tiny_model_dir, tmp_path, monkeypatch):
    import os

    (tmp_path / "eval.txt").write_text("Some text.\n")
    monkeypatch.chdir(tmp_path)
    grid = SweepGrid((ModelSpec(os.path.relpath(tiny_model_dir), "tiny"),), ("maw",), PCTS[:1],
                     EvalSpec(suite="tiny", ppl_text="eval.txt"))
    baselines, pruned = build_trials(grid)
    for t in baselines + pruned:
        assert t.model == str(tiny_model_dir.resolve())
        assert t.eval.ppl_text == str((tmp_path / "eval.txt").resolve())


def test_the_random_control_runs_with_several_seeds_and_one_of_them_is_the_reference(llama_1b_config_dir):
    from glu_ray.sweep.plan import reference_trials
    from glu_ray.trials.stop_rule import StopRule

    grid = SweepGrid((ModelSpec(str(llama_1b_config_dir), "base"),), ("maw", "random"), PCTS[:2], control_seeds=3)
    baselines, pruned = build_trials(grid)
    assert sorted((t.metric, t.width.width, t.seed) for t in pruned) == sorted(
        [("maw", w, 0) for w in (7373, 6554)] + [("random", w, s) for w in (7373, 6554) for s in (0, 1, 2)])
    assert len({t.key for t in pruned}) == 8 and len({t.name for t in pruned}) == 8
    seeded = next(t for t in pruned if t.metric == "random" and t.seed == 2 and t.width.width == 7373)
    assert seeded.name == "Llama-3.2-1B/random/3.6x/seed2" and seeded.key.endswith("|seed=2")
    first = next(t for t in pruned if t.metric == "maw" and t.width.width == 7373)
    assert "seed" not in first.key  # seed 0 keeps the keys existing ledgers hold
    refs = reference_trials(baselines, pruned, StopRule(reference="control"), grid.metrics)
    assert [(t.metric, t.seed) for t in refs] == [(None, 0), ("random", 0), ("random", 0)]  # one control per width
    with pytest.raises(GluRayError, match="control seeds must be at least 1"):
        build_trials(SweepGrid(grid.models, grid.metrics, grid.targets, control_seeds=0))
