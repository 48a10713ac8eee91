"""The sweep's plan and its simulation: references first, longest expected first, packing by share."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from glu_ray.cost.schedule import Job, lower_bound, simulate
from glu_ray.pruning.widths import Width
from glu_ray.sweep.plan import expected_seconds, longest_first, reference_trials, with_references
from glu_ray.trials.config import EvalSpec, TrialConfig
from glu_ray.trials.ledger import REFERENCE, Event, Ledger
from glu_ray.trials.stop_rule import StopRule
from glu_ray.vocab import PPL_WORD, STATUS, TRIAL_SECONDS, TrialStatus

REPO = Path(__file__).resolve().parents[1]


def test_trials_pack_by_share_and_the_first_that_fits_starts():
    quarter = [Job(f"q{i}", 10, 0.25) for i in range(8)]
    s = simulate([quarter], devices=1)
    assert [s.starts[f"q{i}"] for i in range(8)] == [0] * 4 + [10] * 4 and s.makespan == 20
    # A 0.75 that does not fit waits; the 0.25 behind it does not fit either; both start at 10.
    jobs = [Job("a", 10, 0.5), Job("b", 10, 0.5), Job("c", 10, 0.75), Job("d", 5, 0.25)]
    s = simulate([jobs], devices=1)
    assert (s.starts["c"], s.starts["d"]) == (10, 10) and s.makespan == 20
    # ... but one that fits beside a waiting one starts at once (Tune's FIFO picks the first that fits).
    s = simulate([[Job("a", 10, 0.5), Job("c", 10, 0.75), Job("d", 10, 0.25)]], devices=1)
    assert s.starts["d"] == 0 and s.starts["c"] == 10


def test_concurrency_cap_phases_and_bound():
    jobs = [Job(f"j{i}", 10, 1.0) for i in range(4)]
    assert simulate([jobs], devices=4, max_concurrent=2).makespan == 20
    s = simulate([[Job("ref", 3, 1.0)], jobs], devices=4)
    assert min(s.starts[j.key] for j in jobs) == 3 and s.makespan == 13
    assert lower_bound([Job("x", 40, 0.5), Job("y", 10, 0.5)], devices=2) == 40  # the longest trial
    assert lower_bound([Job(f"z{i}", 10, 1.0) for i in range(8)], devices=2) == 40  # device-seconds / devices
    # On CPUs: one machine of 2 CPUs, a trial per CPU.
    assert simulate([[Job(f"c{i}", 5, 1.0) for i in range(4)]], devices=1, capacity=2.0).makespan == 10


def test_longest_expected_first_beats_grid_order_on_a_long_tail():
    jobs = [Job(f"short{i}", 10, 1.0) for i in range(3)] + [Job("long", 30, 1.0)]
    grid = simulate([jobs], devices=2).makespan
    first = simulate([sorted(jobs, key=lambda j: -j.seconds)], devices=2).makespan
    assert (grid, first) == (40, 30) and first == lower_bound(jobs, devices=2)


def _cfg(metric, width, model="m") -> TrialConfig:
    return TrialConfig(model=model, model_name=model, metric=metric, width=Width(width, 128, 32), num_params=10_000,
                       variant="base", eval=EvalSpec(), stop=StopRule(reference="control", threshold=3.0))


def test_references_and_what_waits_for_them():
    base = _cfg(None, 128)
    ctrl, maw = _cfg("random", 64), _cfg("maw", 64)
    rule = StopRule(reference="control", threshold=3.0)
    refs = reference_trials([base], [ctrl, maw], rule, ("random", "maw"))
    assert [c.key for c in refs] == [base.key, ctrl.key]
    assert reference_trials([base], [ctrl, maw], StopRule(), ("random", "maw")) == [base]
    ready, held = with_references([ctrl, maw], {base.key: {PPL_WORD: 10.0}}, [base], refs)
    assert [c.key for c in ready] == [ctrl.key] and [c.key for c in held] == [maw.key]  # its control is missing
    assert ready[0].baseline_ppl == 10.0 and ready[0].control_ppl is None  # a control never reads itself
    ready, held = with_references([ctrl, maw], {base.key: {PPL_WORD: 10.0}, ctrl.key: {PPL_WORD: 40.0}}, [base], refs)
    assert not held and ready[1].control_ppl == 40.0
    nan = with_references([maw], {base.key: {PPL_WORD: float("nan")}, ctrl.key: {PPL_WORD: 40.0}}, [base], refs)[0]
    assert nan[0].baseline_ppl is None  # measured but not finite: the trial runs on, as before


def test_expected_seconds_scale_the_model_by_what_the_ledger_measured():
    a, a2, b = _cfg(None, 128, "a"), _cfg("maw", 64, "a"), _cfg(None, 128, "b")
    modelled = {a.key: 100.0, a2.key: 60.0, b.key: 50.0}
    assert expected_seconds([a, a2, b], modelled) == modelled
    rows = {a.key: {STATUS: TrialStatus.COMPLETED, TRIAL_SECONDS: 300.0}}  # this CPU: 3x the model
    got = expected_seconds([a, a2, b], modelled, rows)
    assert got == {a.key: 300.0, a2.key: 180.0, b.key: 150.0}
    assert [c.key for c in longest_first([b, a2, a], got)] == [a.key, a2.key, b.key]
    tie = {a.key: 1.0, b.key: 1.0}
    assert [c.key for c in longest_first([b, a], tie)] == [b.key, a.key]  # ties keep the given order


def test_a_reference_is_in_the_ledger_but_never_a_result(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(Event("k", REFERENCE, 0, TrialStatus.RUNNING, {PPL_WORD: 12.0}))
    assert ledger.results() == {} and ledger.finished() == {}
    assert ledger.stage0() == {"k": {PPL_WORD: 12.0}}
    ledger.append(Event("k", "result", 0, TrialStatus.RUNNING, {PPL_WORD: 12.5}))
    assert ledger.stage0()["k"][PPL_WORD] == 12.5 and ledger.results()["k"][PPL_WORD] == 12.5


@pytest.mark.parametrize("gpus", [8, 16])
def test_study_grid_makespan_is_within_1_2x_of_the_bound(gpus, capsys, monkeypatch):
    """Done-when of issue 23: the study grid (bundled configs, offline), simulated as the sweep runs."""
    sys.path.insert(0, str(REPO / "sweeps"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import full_grid

    assert full_grid.main({"study": full_grid.STUDY}, ["--estimate", "--gpus", str(gpus), "--gpus-per-node", "8"]) == 0
    out = capsys.readouterr().out
    assert f"on {gpus} GPUs ({gpus // 8} node" in out
    ratio = float(re.search(r"makespan ([\d.]+)x the bound", out).group(1))
    assert 1.0 <= ratio <= 1.2, out


@pytest.mark.slow
def test_the_simulation_holds_against_a_real_local_run(finished_tiny_sweep):
    """The session's tiny sweep, as Tune really ran it (MLflow's run start and end, driver-side):
    trials started longest expected first, and list scheduling at the same concurrency with the
    measured durations puts every start and the makespan where the real run had them."""
    import os

    from mlflow.tracking import MlflowClient

    from glu_ray.sweep.estimate import modelled_times, trial_costs

    result, _, opts = finished_tiny_sweep
    client = MlflowClient(result.tracking_uri)
    exp = client.get_experiment_by_name(result.experiment)
    runs = {r.data.tags["glu_ray.trial_key"]: r.info
            for r in client.search_runs([exp.experiment_id], "tags.`glu_ray.role` = 'trial'")}
    t0 = min(r.start_time for r in runs.values())
    real = {k: ((r.start_time - t0) / 1000, (r.end_time - t0) / 1000) for k, r in runs.items()}
    times = modelled_times(trial_costs(result.trials, lambda c: 1.0))  # what the driver sorted by, on a CPU
    order = longest_first(result.trials, {k: t.full for k, t in times.items()})
    # Tune kept our order: no trial started clearly before one planned ahead of it. Trials that
    # start together (one per free slot) log their MLflow start a few ms apart in either order.
    starts = [real[c.key][0] for c in order]
    assert all(a <= b + 1.0 for i, a in enumerate(starts) for b in starts[i + 1:]), real
    slots = min(os.cpu_count(), opts.max_concurrent or os.cpu_count()) / opts.cpus_per_trial
    jobs = [Job(c.key, real[c.key][1] - real[c.key][0], opts.cpus_per_trial) for c in order]
    sim = simulate([jobs], devices=1, capacity=slots * opts.cpus_per_trial, max_concurrent=opts.max_concurrent)
    for key, (start, _) in real.items():
        assert sim.starts[key] == pytest.approx(start, abs=3.0), key  # Tune's own start-up between trials
    assert sim.makespan == pytest.approx(max(end for _, end in real.values()), rel=0.2, abs=3.0)


@pytest.mark.parametrize("argv, said", [
    (["--gpus", "8"], "add --estimate"),
    (["--estimate", "--gpus", "0"], "--gpus must be at least 1"),
    (["--estimate", "--gpus", "8", "--gpus-per-node", "3"], "not a whole number of nodes"),
])
def test_estimate_flags_are_checked_before_anything_is_built(argv, said, capsys):
    sys.path.insert(0, str(REPO / "sweeps"))
    import full_grid

    assert full_grid.main({"study": full_grid.STUDY}, argv) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and len(err.splitlines()) == 1
