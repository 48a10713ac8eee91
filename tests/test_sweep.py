"""The sweep end to end on a real local Ray: 2 tiny models x 3 metrics x 2 widths + baselines."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from glu_ray.trials.stop_rule import StopRule
from glu_ray.trials.config import EvalSpec
from faultkit import planned_faults
from glu_ray.sweep.grid import ModelSpec, SweepGrid, build_trials
from glu_ray.trials.ledger import Ledger
from glu_ray.sweep.driver import SweepOptions, run_sweep
from glu_ray.models.tiny import build_tiny_model, tiny_eval_text
from glu_ray.pruning.widths import TargetWidth

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
STOPPED = "tiny-a/maw/2x"  # the config we make catastrophic on purpose


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    a = build_tiny_model(root / "tiny-a", seed=0, steps=40, hidden=32, intermediate=128, layers=2)
    b = build_tiny_model(root / "tiny-b", seed=1, steps=40, hidden=32, intermediate=96, layers=2)
    return a, b, tiny_eval_text(root)


def grid_for(models, **kw) -> SweepGrid:
    a, b, text = models
    ev = EvalSpec(suite="tiny", tasks=("tiny_mc", "tiny_wikitext"), limit=4, batch_size=4, ppl_text=str(text))
    base = dict(models=(ModelSpec(str(a), "tiny"), ModelSpec(str(b), "tiny")), metrics=("maw", "vow", "pon"),
                targets=(TargetWidth(pruning_pct=25), TargetWidth(pruning_pct=50)), eval=ev, stop=StopRule(threshold=1000.0))
    return SweepGrid(**{**base, **kw})


@pytest.fixture(scope="module")
def sweep(models, tmp_path_factory, ray_cluster):
    storage = tmp_path_factory.mktemp("runs")
    opts = SweepOptions(name="e2e", storage=str(storage), verbose=0)
    _, pruned = build_trials(grid_for(models))
    with planned_faults(ray_cluster, (next(c for c in pruned if c.name == STOPPED), "catastrophic")):
        result = run_sweep(grid_for(models), opts)
    return result, opts, models


def test_every_trial_ends_with_a_status_and_stages_in_order(sweep):
    result, _, _ = sweep
    assert result.finished and len(result.trials) == 14  # 2 baselines + 2 x 3 x 2
    statuses = Counter(result.rows[t.key]["status"] for t in result.trials)
    assert statuses == {"completed": 13, "stopped: catastrophic": 1}
    events = Ledger(result.experiment_dir / "ledger.jsonl").events()
    for t in result.trials:
        stages = [e.stage for e in events if e.key == t.key and e.kind == "result"]
        assert stages == ([0] if t.name == STOPPED else [0, 1, 2]), t.name


def test_catastrophic_trial_stops_after_stage_zero_with_its_metrics(sweep):
    result, _, _ = sweep
    stopped = next(t for t in result.trials if t.name == STOPPED)
    row = result.rows[stopped.key]
    assert row["ppl/ratio_to_baseline"] > 1000 and "tiny_mc/acc_norm" not in row
    assert stopped.baseline_ppl is not None  # decided against the model's own baseline


def test_reports_carry_identity_and_baselines_are_shared(sweep):
    result, _, _ = sweep
    for t in result.trials:
        row = result.rows[t.key]
        assert (row["model"], row["width"], row["metric"]) == (t.model, t.width.width, t.method)
        assert row["params_kept"] > 0
    assert sum(t.is_baseline for t in result.trials) == 2
    a_base = next(t for t in result.trials if t.is_baseline and t.model_name == "tiny-a")
    a_pruned = [t for t in result.trials if not t.is_baseline and t.model_name == "tiny-a"]
    assert {t.baseline_ppl for t in a_pruned} == {result.rows[a_base.key]["ppl/word_perplexity"]}


def test_ranking_computed_once_per_model_and_metric(sweep):
    result, _, _ = sweep
    assert len(list((result.experiment_dir / "rankings").glob("*.pt"))) == 6
    fresh = Counter((t.model, t.metric) for t in result.trials
                    if not t.is_baseline and result.rows[t.key].get("ranking_cached") == 0)
    assert set(fresh.values()) == {1} and len(fresh) == 6


def test_mlflow_has_one_parent_and_one_child_per_trial(sweep):
    from mlflow.tracking import MlflowClient

    result, _, _ = sweep
    client = MlflowClient(result.tracking_uri)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    children = [r for r in runs if r.data.tags.get("glu_ray.role") == "trial"]
    assert sum(r.data.tags.get("glu_ray.role") == "sweep" for r in runs) == 1
    assert sorted(r.info.run_name for r in children) == sorted(t.name for t in result.trials)
    stopped = next(r for r in children if r.info.run_name == STOPPED)
    assert stopped.data.tags["glu_ray.status"] == "stopped: catastrophic"
    assert "ppl/word_perplexity" in stopped.data.metrics


def test_rerun_after_an_interrupt_runs_only_what_did_not_finish(sweep):
    from mlflow.tracking import MlflowClient

    result, opts, models = sweep
    ledger_path = result.experiment_dir / "ledger.jsonl"
    victim = next(t for t in result.trials if t.name == "tiny-b/vow/1.5x")
    # An interrupt before the trial's end was recorded: drop its last events from the ledger.
    lines = ledger_path.read_text().splitlines()
    kept = [ln for ln in lines if not (f'"key": "{victim.key}"' in ln and '"stage": 2' in ln or
                                         f'"key": "{victim.key}"' in ln and '"kind": "end"' in ln)]
    ledger_path.write_text("\n".join(kept) + "\n")
    before = Counter(e.key for e in Ledger(ledger_path).events() if e.kind == "end")

    again = run_sweep(grid_for(models), opts)

    after = Counter(e.key for e in Ledger(ledger_path).events() if e.kind == "end")
    assert again.finished
    assert after - before == Counter({victim.key: 1})  # only the interrupted trial ran again
    client = MlflowClient(again.tracking_uri)
    exp = client.get_experiment_by_name("e2e")
    children = [r for r in client.search_runs([exp.experiment_id], max_results=1000)
                if r.data.tags.get("glu_ray.role") == "trial"]
    assert Counter(r.info.run_name for r in children) == Counter(t.name for t in result.trials)


def test_control_rule_runs_controls_first_then_judges_against_them_and_replays(models, tmp_path, ray_cluster,
                                                                               capsys):
    """StopRule(reference=control): random's stage 0 is measured first; maw at the same width carries the
    control's perplexity and is stopped against it; --replay of other rules reads the same ledger."""
    from glu_ray.cli.sweep import Preset, main

    a, _, _ = models
    rule = StopRule(reference="control", threshold=3.0)
    grid = replace(grid_for(models), models=(ModelSpec(str(a), "tiny"),), metrics=("random", "maw"),
                   targets=(TargetWidth(pruning_pct=50),), stop=rule)
    _, pruned = build_trials(grid)
    with planned_faults(ray_cluster, (next(c for c in pruned if c.name == STOPPED), "catastrophic")):  # the maw trial
        result = run_sweep(grid, SweepOptions(name="ctrl", storage=str(tmp_path), verbose=0))
    assert result.finished
    events = Ledger(result.experiment_dir / "ledger.jsonl").events()
    control, faulted = (next(t for t in result.trials if t.metric == m) for m in ("random", "maw"))
    first = {}
    for i, e in enumerate(events):
        first.setdefault((e.key, e.kind), i)
    assert first[(control.key, "reference")] < first[(faulted.key, "result")]  # the control's stage 0 came first
    assert faulted.control_ppl == pytest.approx(result.rows[control.key]["ppl/word_perplexity"])
    assert result.rows[faulted.key]["ppl/ratio_to_control"] > 3
    assert result.rows[faulted.key]["status"] == "stopped: catastrophic"
    assert result.rows[control.key]["status"] == "completed"
    assert result.rows[control.key]["trial/cpu_seconds"] > 0

    preset = Preset(models=(), metrics=("random", "maw"), pruning_pcts=(50,), stop=rule, experiment="ctrl")
    argv = ["--models", str(a), "--suite", "tiny", "--storage", str(tmp_path), "--replay"]
    # rule tried -> what its replay says of the two pruned trials (random: the control; maw: faulted)
    tried = [([], "would stop 1 of 2"), (["--no-early-stop"], "would stop 0 of 2"),
             (["--stop-reference", "baseline", "--threshold", "1e9"], "would stop 0 of 2"),
             (["--stop-reference", "baseline", "--threshold", "1.01"], "would stop 2 of 2")]
    for flags, verdict in tried:
        capsys.readouterr()
        assert main({"p": preset}, argv + flags) == 0
        assert verdict in capsys.readouterr().out.splitlines(), flags
    assert main({"p": preset}, ["--models", str(a), "--suite", "tiny", "--storage", str(tmp_path / "none"),
                                "--replay"]) == 2  # no ledger there: one-line error
