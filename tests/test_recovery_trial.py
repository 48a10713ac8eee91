"""The trial's healing stage, the real trial function in this process (Tune's report captured):
a healed trial reports before and after in separate namespaces plus the healing's cost and loss
curve; a trial stopped as catastrophic never loads a teacher nor heals."""

from __future__ import annotations

import json

import pytest
import torch

from glu_ray.errors import GluRayError
from glu_ray.models.tiny import build_tiny_model, tiny_corpus, tiny_eval_text
from glu_ray.pruning.calibration import CalibrationSpec
from glu_ray.pruning.widths import TargetWidth, resolve_width
from glu_ray.recovery import RecoverySpec
from glu_ray.trials.config import EvalSpec, TrialConfig
from glu_ray.sweep.grid import ModelSpec, SweepGrid, build_trials
from glu_ray.trials.stop_rule import StopRule
from glu_ray.tracking.artifacts import ITEM_SCORES, RECOVERY, RECOVERY_PLOT
from glu_ray.vocab import PPL_WORD, STAGE, STATUS, TrialStatus, healed_key, is_own_metric, recover_key


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: a second thread only adds contention
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("heal-trial")
    model = build_tiny_model(root / "tiny", seed=0, steps=60, hidden=32, intermediate=128, layers=2)
    heal_text = root / "heal.txt"
    heal_text.write_text(tiny_corpus(300, seed=5))
    return model, tiny_eval_text(root), heal_text, root


def _config(setup, **kw) -> TrialConfig:
    model, eval_text, heal_text, root = setup
    ev = EvalSpec(suite="tiny", tasks=("tiny_mc",), limit=4, batch_size=4, ppl_text=str(eval_text))
    spec = RecoverySpec(steps=6, batch_size=2, lr=2e-3, data=CalibrationSpec(str(heal_text), seq_len=64))
    base = dict(model=str(model), model_name="tiny", metric="maw", width=resolve_width(TargetWidth(pruning_pct=50), 128, 32),
                num_params=0, variant="base", eval=ev, stop=StopRule(threshold=1e9), baseline_ppl=None,
                ranking_cache=str(root / "rankings"), artifact_dir=str(root / "trial"), recovery=spec)
    return TrialConfig(**{**base, **kw})


def _run(cfg: TrialConfig, monkeypatch) -> tuple[list[dict], list[str]]:
    import ray.tune

    import glu_ray.sweep.healing as healing
    import glu_ray.sweep.trial as trial

    reports, loads = [], []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **_: reports.append(metrics))
    for module in (trial, healing):
        real = module.load_model
        monkeypatch.setattr(module, "load_model", lambda src, _real=real, **kw: loads.append(src) or _real(src, **kw))
    trial.run_trial({"trial": cfg.to_dict()})
    return reports, loads


def test_healed_trial_reports_before_and_after_and_the_healing_cost(setup, monkeypatch):
    cfg = _config(setup)
    reports, loads = _run(cfg, monkeypatch)
    assert [r[STAGE] for r in reports] == [0, 1, 2, 3]  # pruned: ppl, tiny_mc; healed: the same again
    assert [r[STATUS] for r in reports] == ["running"] * 3 + ["completed"]
    assert len(loads) == 2  # the student, then the teacher once
    before, healed_ppl, healed_tasks = reports[0], reports[2], reports[3]
    assert PPL_WORD in before and healed_key(PPL_WORD) in healed_ppl and PPL_WORD not in healed_ppl
    assert healed_key("tiny_mc/acc_norm") in healed_tasks and "tiny_mc/acc_norm" in reports[1]
    cost = {k: v for k, v in healed_ppl.items() if k.startswith("recover/")}
    assert cost[recover_key("tokens")] == cfg.recovery.tokens == 6 * 2 * 64
    assert cost[recover_key("seconds")] > 0 and cost[recover_key("peak_memory_mb")] > 0
    assert all(is_own_metric(k, {"tiny_mc"}) for r in reports for k in r if "/" in k)
    saved = json.loads((setup[3] / "trial" / RECOVERY).read_text())
    assert len(saved["result"]["losses"]) == 6 and saved["spec"]["method"] == "kd"
    # The reported cost is the saved curve's ends. (That KD lowers the loss is test_recovery's, on a
    # fixed batch: here each step's loss is on another batch, and the tiny model's few steps are noise.)
    losses = saved["result"]["losses"]
    assert (cost[recover_key("loss_first")], cost[recover_key("loss_last")]) == (losses[0], losses[-1])
    assert all(0 < loss < float("inf") for loss in losses)
    assert (setup[3] / "trial" / RECOVERY_PLOT).stat().st_size > 1000
    raw = json.loads((setup[3] / "trial" / "lm_eval_results.json").read_text())
    assert set(raw) == {"stage1", "stage3"}  # the healed stages' raw results never overwrite the pruned ones
    items = json.loads((setup[3] / "trial" / ITEM_SCORES).read_text())
    assert set(items) == {"stage1", "stage3"} and set(items["stage3"]) == {"tiny_mc"}


def test_a_stopped_trial_does_not_heal(setup, monkeypatch):
    # The real stop rule: any pruned tiny model is far above twice a perplexity of 1.
    cfg = _config(setup, baseline_ppl=1.0, stop=StopRule(threshold=2.0))
    reports, loads = _run(cfg, monkeypatch)
    assert [(r[STAGE], r[STATUS]) for r in reports] == [(0, TrialStatus.STOPPED.value)]
    assert len(loads) == 1  # no teacher
    assert not [k for k in reports[0] if k.startswith(("recover/", "healed/"))]
    assert not (setup[3] / "trial" / RECOVERY).exists()


def test_config_round_trip_key_and_grid(setup):
    model, eval_text, heal_text, _ = setup
    cfg = _config(setup)
    assert TrialConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.key.endswith("|kd:768") and _config(setup, recovery=None).key != cfg.key
    ev = EvalSpec(suite="tiny", ppl_text=str(eval_text))
    grid = SweepGrid((ModelSpec(str(model), "tiny"),), ("maw",), (TargetWidth(pruning_pct=50),), ev,
                     recovery=cfg.recovery)
    baselines, pruned = build_trials(grid)
    assert baselines[0].recovery is None and pruned[0].recovery == cfg.recovery
    from glu_ray.sweep.results import results_table
    from glu_ray.vocab import PPL_RATIO

    rows = {pruned[0].key: {STATUS: "completed", healed_key(PPL_WORD): 12.5, healed_key(PPL_RATIO): 1.25}}
    table = results_table(baselines + pruned, rows)  # the sweep's final table: healed beside pruned
    assert table["healed_ppl"].tolist()[1:] == [12.5] and table["healed_ppl_x"].tolist()[1:] == [1.25]
    same_text = RecoverySpec(data=CalibrationSpec(str(eval_text), seq_len=32))
    with pytest.raises(GluRayError, match="is the stage-0 evaluation text"):
        build_trials(SweepGrid(grid.models, grid.metrics, grid.targets, ev, recovery=same_text))
