"""A tiny sweep with --measure-efficiency, end to end on a real local Ray and a real MLflow store."""

from __future__ import annotations

import json

import pytest

from glu_ray import vocab as V
from glu_ray.cli.sweep import Preset, main
from glu_ray.efficiency.spec import EfficiencySpec
from glu_ray.models.tiny import build_tiny_model, tiny_eval_text
from glu_ray.trials.config import EvalSpec
from glu_ray.sweep.grid import ModelSpec
from glu_ray.trials.stop_rule import StopRule
from glu_ray.tracking.runs import default_tracking_uri

pytestmark = pytest.mark.slow
SPEC = EfficiencySpec(prompt_len=8, gen_len=3, batches=(1, 2), repeats=2, answer_max_new_tokens=4)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("eff")
    model = build_tiny_model(root / "tiny-eff", seed=0, steps=30, hidden=32, intermediate=128, layers=2)
    preset = Preset(models=(ModelSpec(str(model), "tiny"),), metrics=("maw",), pruning_pcts=(25, 50),
                    stop=StopRule.off(), efficiency=SPEC, experiment="eff",
                    eval=EvalSpec(suite="tiny", tasks=("tiny_mc", "tiny_wikitext"), limit=4, batch_size=4,
                                  ppl_text=str(tiny_eval_text(root))))
    # Joins the session's Ray where one is up (never shut down: later tests share it).
    code = main({"eff": preset}, ["--measure-efficiency", "--storage", str(root / "runs"), "--verbose", "0"])
    client = MlflowClient(default_tracking_uri(root / "runs" / "eff"))
    exp = client.get_experiment_by_name("eff")
    return code, client, exp, root / "runs" / "eff"


def test_every_completed_trial_run_has_the_efficiency_metrics(swept):
    code, client, exp, _ = swept
    assert code == 0
    trials = client.search_runs([exp.experiment_id], V.role_filter(V.ROLE_TRIAL))
    assert len(trials) == 3 and {r.data.tags[V.STATUS_TAG] for r in trials} == {V.TrialStatus.COMPLETED}
    key = V.efficiency_key
    for run in trials:
        m = run.data.metrics
        for b in SPEC.batches:
            assert m[key(V.DECODE_TOK_S, b)] > 0 and m[key(V.PREFILL_TOK_S, b)] > 0
            assert m[key(V.DECODE_CPU_TOK_S, b)] > 0
        assert m[key(V.PARAMS_TOTAL)] == float(run.data.params[V.PARAMS_KEPT])
        assert 0 <= m[key(V.ANSWER_TOKENS)] <= SPEC.answer_max_new_tokens
        path = client.download_artifacts(run.info.run_id, "efficiency.json")
        record = json.loads(open(path).read())
        for t in record["throughput"]:
            # Energy is either measured (a readable counter) or absent with its reason: never a 0.
            measured = t["energy"]["status"] == "measured"
            assert (key(V.ENERGY_J_PER_TOK, t["batch"]) in m) == measured
            assert measured or (t["energy"]["joules"] is None and t["energy"]["reason"])
            assert t["gen_len"] == SPEC.gen_len


def test_the_sweep_report_shows_the_pareto_figure(swept):
    _, client, exp, folder = swept
    md = (folder / "report" / "report.md").read_text()
    assert "![Pareto fronts](pareto.png)" in md and (folder / "report" / "pareto.png").stat().st_size > 10_000
    parent = client.search_runs([exp.experiment_id], V.role_filter(V.ROLE_SWEEP))[0]
    logged = {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/pareto.png", "report/pareto.csv"} <= logged
