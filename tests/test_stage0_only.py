"""--stage0-only: a metric's pruned trials run stage 0 alone and complete there, by design.

The grid marks them (EvalSpec.stage0_only, so their key too), the trial ends after stage 0 with
status completed (not stopped: analysis must not floor their benchmarks), MLflow says why they
have no benchmark scores, --estimate prices them as stage 0 alone, and the width search keys its
probes as the full trial (stage 0 is the same either way). End to end on a tiny model on Ray.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from conftest import tiny_sweep_grid
from glu_ray.errors import GluRayError
from glu_ray.pruning.widths import TargetWidth
from glu_ray.sweep.grid import ModelSpec, SweepGrid, build_trials
from glu_ray.trials.config import EvalSpec
from glu_ray.trials.ledger import Ledger
from glu_ray.vocab import PPL_WORD

TINY_EVAL = EvalSpec(suite="tiny", tasks=("tiny_mc",))


def tiny_grid(model_dir, **kw) -> SweepGrid:
    return SweepGrid((ModelSpec(str(model_dir), "tiny"),), ("maw", "pon", "random"),
                     (TargetWidth(pruning_pct=25), TargetWidth(pruning_pct=50)), TINY_EVAL, **kw)


def test_the_grid_marks_only_the_named_metrics_every_seed_and_never_the_baseline(tiny_model_dir):
    baselines, pruned = build_trials(tiny_grid(tiny_model_dir, stage0_only=("pon", "random"), control_seeds=2))
    assert not baselines[0].eval.stage0_only
    short = Counter(c.metric for c in pruned if c.eval.stage0_only)
    assert short == {"pon": 2, "random": 4} and all(not c.eval.stage0_only for c in pruned if c.metric == "maw")
    _, full = build_trials(tiny_grid(tiny_model_dir, control_seeds=2))
    # Another trial than the full one at the same width: a rerun without the flag evaluates it fully.
    assert {c.key for c in pruned} - {c.key for c in full} == {c.key + "|stage0" for c in full if c.metric != "maw"}


def test_a_name_that_is_not_a_grid_metric_is_one_line(tiny_model_dir):
    with pytest.raises(GluRayError, match=r"^--stage0-only 'vow' is not a metric of this grid \(the grid's metrics "
                                          r"are maw, pon, random\)$"):
        build_trials(tiny_grid(tiny_model_dir, stage0_only=("vow",)))
    with pytest.raises(GluRayError, match="the baseline always runs in full"):
        build_trials(tiny_grid(tiny_model_dir, stage0_only=("baseline",)))


def test_a_preset_default_keeps_only_the_metrics_run_and_the_flag_overrides_it(tiny_model_dir):
    from glu_ray.cli.sweep import Preset, build_parser, grid_from_args

    preset = Preset(models=(ModelSpec(str(tiny_model_dir), "tiny"),), metrics=("maw", "pon"), pruning_pcts=(50,),
                    stage0_only=("pon", "l2"))
    presets = {"p": preset}
    grid_of = lambda *argv: grid_from_args(build_parser(presets, "").parse_args(list(argv)), preset)  # noqa: E731
    assert grid_of().stage0_only == ("pon",)  # l2 is not run: dropped, not an error
    assert grid_of("--stage0-only", "maw").stage0_only == ("maw",)
    assert grid_of("--stage0-only", "").stage0_only == ()  # '' : every metric in full


def test_estimate_prices_them_as_stage_0_alone(tmp_path, capsys):
    """A study-size config (the cost model's workloads are the study's tasks): a stage-0-only trial
    costs what a trial stopped after stage 0 costs."""
    from transformers import LlamaConfig

    from glu_ray.sweep.driver import SweepOptions
    from glu_ray.sweep.estimate import modelled_times, print_estimate, trial_costs

    LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256).save_pretrained(tmp_path / "m")
    grid = SweepGrid((ModelSpec(str(tmp_path / "m"), "base"),), ("maw", "vow"), (TargetWidth(pruning_pct=40),),
                     stage0_only=("vow",))
    _, pruned = build_trials(grid)
    times = modelled_times(trial_costs(pruned, lambda c: 1.0))
    maw, vow = (times[c.key] for c in sorted(pruned, key=lambda c: c.metric))
    assert vow.full == vow.stage0 == pytest.approx(maw.stage0) and maw.full > 2 * maw.stage0
    assert print_estimate(grid, SweepOptions(), gpus=1) == 0
    assert "--stage0-only vow: 1 of 2 pruned trials priced at stage 0 alone" in capsys.readouterr().out


def test_estimate_reads_no_calibration_text(tmp_path, capsys):
    """--estimate runs nothing, so a data-driven metric's text is not read (offline, wikitext is
    unreachable): an empty file fails the sweep's checks and still prices."""
    from transformers import LlamaConfig

    from glu_ray.pruning.calibration import CalibrationSpec
    from glu_ray.sweep.driver import SweepOptions
    from glu_ray.sweep.estimate import print_estimate

    LlamaConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=1000).save_pretrained(tmp_path / "m")
    (tmp_path / "empty.txt").write_text("")
    grid = SweepGrid((ModelSpec(str(tmp_path / "m"), "base"),), ("act",), (TargetWidth(pruning_pct=40),),
                     calibration=CalibrationSpec(str(tmp_path / "empty.txt")))
    with pytest.raises(GluRayError, match="has no documents"):
        build_trials(grid)
    assert print_estimate(grid, SweepOptions(), gpus=1) == 0
    assert "act" in capsys.readouterr().out


def test_width_search_probes_are_keyed_as_the_full_trial(tiny_model_dir):
    """Stage 0 does not depend on what runs after it: a probe serves both settings, and the trial
    chosen from it is the stage-0-only one."""
    from glu_ray.sweep.grid import pruned_at
    from glu_ray.sweep.width_searcher import searches_for
    from glu_ray.sweep.width_search import WidthSearch

    grid = tiny_grid(tiny_model_dir, stage0_only=("pon",))
    [base], _ = build_trials(grid)
    [search] = searches_for([replace(pruned_at(grid, base, "pon", 100), baseline_ppl=10.0)], WidthSearch())
    assert search.at(64).eval.stage0_only and not search.probe(64).eval.stage0_only
    assert search.probe(64).key == pruned_at(replace(grid, stage0_only=()), base, "pon", 64).key


def test_widths_auto_runs_every_control_seed_at_the_widths_found_and_marks_them(tiny_model_dir, tmp_path):
    """find_widths with a stage-0 curve given in code (its probes' ppl: baseline x native / width, in the
    ledger as the sweep's probes would be): random's widths run with every --control-seeds seed (seed 0
    placed them), all stage 0 only; the probes are keyed as full, first-seed trials."""
    from glu_ray.sweep.width_search import WidthSearch
    from glu_ray.sweep.width_searcher import WidthSearcher, find_widths
    from glu_ray.trials.config import TrialConfig
    from glu_ray.trials.ledger import REFERENCE, SEARCH, Event

    grid = replace(tiny_grid(tiny_model_dir, control_seeds=3, stage0_only=("random",)), metrics=("maw", "random"),
                   widths=WidthSearch(targets=(1.5, 3.0), max_steps=4))
    [base], none = build_trials(grid)
    assert none == []  # --widths auto: the pruned trials are known once the search has run
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(Event(base.key, REFERENCE, 0, "completed", {PPL_WORD: 10.0}))

    def run_probes(searcher: WidthSearcher, max_trials: int) -> None:
        n = 0
        while (config := searcher.suggest(f"t{n}")) != WidthSearcher.FINISHED:
            cfg = TrialConfig.from_dict(config["trial"])
            ppl = 10.0 * cfg.width.intermediate / cfg.width.width
            ledger.append(Event(cfg.key, SEARCH, 0, "completed", {PPL_WORD: ppl}))
            searcher.on_trial_complete(f"t{n}", {PPL_WORD: ppl})
            n += 1

    pruned, settled, _ = find_widths(grid, [base], ledger, run_probes, verbose=0)
    assert settled
    widths = sorted({c.width.width for c in pruned if c.metric == "maw"})
    assert len(widths) == 2 and all(not c.eval.stage0_only for c in pruned if c.metric == "maw")
    random = [c for c in pruned if c.metric == "random"]
    assert sorted((c.width.width, c.seed) for c in random) == [(w, s) for w in widths for s in range(3)]
    assert all(c.eval.stage0_only and c.width_choice is not None for c in random)
    probes = [e.key for e in ledger.events() if e.kind == SEARCH]
    assert probes and not any("|stage0" in k or "|seed=" in k for k in probes)


@pytest.mark.slow
def test_a_sweep_runs_them_to_stage_0_and_the_rest_in_full(tmp_path, ray_cluster):
    """Tiny model x {maw full, pon stage 0 only} x 50% + baseline: ledger, MLflow, report; a rerun runs nothing."""
    from mlflow.tracking import MlflowClient

    from analysis import analyse, from_sweep
    from glu_ray.cli.sweep import write_sweep_report
    from glu_ray.sweep.driver import SweepOptions, run_sweep
    from glu_ray.sweep.results import results_table

    grid = replace(tiny_sweep_grid(tmp_path), stage0_only=("pon",))
    grid = replace(grid, eval=replace(grid.eval, tasks=("tiny_mc",)))  # one lm-eval stage is enough here
    opts = SweepOptions(name="s0", storage=str(tmp_path / "runs"), verbose=0)
    result = run_sweep(grid, opts)
    assert result.finished
    bench = next(b.key for b in grid.eval.load_suite().benchmarks if b.name == "tiny_mc")
    ledger = Ledger(result.experiment_dir / "ledger.jsonl")
    events = ledger.events()
    by = {c.metric: c for c in result.trials}
    for metric, stages in ((None, [0, 1]), ("maw", [0, 1]), ("pon", [0])):
        cfg, row = by[metric], result.rows[by[metric].key]
        assert [e.stage for e in events if e.key == cfg.key and e.kind == "result"] == stages, metric
        assert row["status"] == "completed" and PPL_WORD in row and row["ppl/ratio_to_baseline"] > 0
        assert (bench in row) == (metric != "pon")

    client = MlflowClient(result.tracking_uri)
    exp = client.get_experiment_by_name("s0")
    runs = {r.data.params["metric"]: r for r in client.search_runs([exp.experiment_id], "tags.`glu_ray.role` = 'trial'")}
    assert runs["pon"].data.params["stages"] == "stage 0 only (--stage0-only)" and runs["maw"].data.params["stages"] == "all"
    assert runs["pon"].data.tags["glu_ray.status"] == "completed"
    assert PPL_WORD in runs["pon"].data.metrics and bench not in runs["pon"].data.metrics
    assert bench in runs["maw"].data.metrics

    table = results_table(result.trials, result.rows)  # what the sweep prints and publishes
    assert dict(zip(table["trial"], table["stages"])) == {c.name: "all" if c.metric != "pon" else "0 only"
                                                           for c in result.trials}
    frame = from_sweep(result.trials, result.rows)
    pon = frame[frame["method"] == "pon"]
    assert list(pon["benchmark"]) == ["ppl"] and (pon["status"] == "completed").all()  # no floored benchmark rows
    assert {"ppl", "tiny_mc"} <= set(frame[frame["method"] == "maw"]["benchmark"])
    hier = analyse(frame, n_boot=20).hierarchy
    assert list(hier[hier["method"] == "pon"]["benchmark"]) == ["ppl"]  # its perplexity curve, no benchmark
    report = write_sweep_report(result)
    assert report is not None and (report / "report.md").is_file()

    again = run_sweep(grid, opts)
    assert again.finished and len(Ledger(ledger.path).events()) == len(events)  # nothing ran again
