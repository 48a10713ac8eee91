"""Synthetic results with a known hierarchy, a U-curve and an instruct variant; all three sources."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pathlib import Path

from analysis import analyse, from_lm_eval, from_mlflow, sweep_run_id, write_report
from analysis import fragility as F
from analysis.tidy import COLUMNS
from glu_ray.cli.main import main
from glu_ray.pruning.widths import Width
from glu_ray.trials.config import EvalSpec, TrialConfig
from glu_ray.vocab import TRIAL_CONFIG_TAG

RATIOS = (3.2, 2.4, 1.6)  # pruned; the baseline sits at 4.0
# benchmark -> (capability, chance, direction, baseline, pruned scores widest first)
TRUTH = {
    "mmlu": ("knowledge", 0.25, "higher", 0.60, (0.40, 0.30, 0.26)),  # most fragile
    "hellaswag": ("commonsense", 0.25, "higher", 0.70, (0.66, 0.58, 0.48)),
    "piqa": ("physical", 0.5, "higher", 0.80, (0.795, 0.79, 0.785)),  # most robust
    "boolq": ("reading QA", 0.5, "higher", 0.80, (0.62, 0.56, 0.76)),  # dips, then recovers
    "wikitext": ("language modelling", float("nan"), "lower", 10.0, (12.0, 15.0, 20.0)),
}


def bench_rows(bench, cap, chance, direction, base, pruned, variant="base", scale=1.0) -> list[dict]:
    """One benchmark's curve: its baseline at 4.0 and pruned scores at RATIOS (widest first)."""
    if scale != 1.0:  # a steeper or shallower drop towards chance (wikitext's chance is NaN: left alone)
        pruned = [chance + (s - chance) * scale for s in pruned]
    points = [(4.0, "baseline", base)] + [(r, "maw", s) for r, s in zip(RATIOS, pruned)]
    return [dict(model=f"M-{variant}", size="1B", variant=variant, method=method, expansion_ratio=ratio,
                 pruning_pct=100 * (1 - ratio / 4), width=ratio * 64, benchmark=bench, capability=cap, score=score,
                 stderr=0.005, direction=direction, chance=chance, status="completed", score_name="acc")
            for ratio, method, score in points]


def synthetic(variant: str = "base", mmlu_scale: float = 1.0) -> list[dict]:
    return [row for bench, truth in TRUTH.items()
            for row in bench_rows(bench, *truth, variant=variant, scale=mmlu_scale if bench == "mmlu" else 1.0)]


@pytest.fixture(scope="module")
def result():
    df = pd.DataFrame(synthetic("base") + synthetic("instruct", mmlu_scale=0.3), columns=list(COLUMNS))
    return analyse(df, n_boot=300)


def test_hierarchy_orders_most_fragile_first(result):
    base = result.hierarchy[result.hierarchy["variant"] == "base"]
    assert base["benchmark"].tolist()[0] == "mmlu"
    assert base["benchmark"].tolist()[-1] == "piqa"
    assert base["tier"].is_monotonic_increasing
    caps = result.capabilities[result.capabilities["variant"] == "base"]
    assert caps["capability"].iloc[0] == "knowledge"


def test_the_hierarchys_ends_are_separated_where_their_intervals_are_apart(result):
    ends = result.separation.set_index("variant")
    assert ends.loc["base", ["most_fragile", "least_fragile", "separated"]].tolist() == ["knowledge", "physical", True]
    assert ends.at["base", "no_interval"] == ""  # every synthetic score has a stderr
    no_noise = result.capabilities.assign(hi=lambda c: c["hi"].where(c["capability"] != "physical", c["lo"]))
    assert F.separation(no_noise).set_index("variant").at["base", "least_fragile"] != "physical"  # not an end
    assert F.separation(no_noise).set_index("variant").at["base", "no_interval"] == "physical"
    assert 0 < ends.at["base", "difference_lo"] < ends.at["base", "difference"] < ends.at["base", "difference_hi"]
    wide = result.capabilities.assign(lo=0.0, hi=1.0)  # every interval spans everything: no end stands apart
    assert not F.separation(wide)["separated"].any() and F.separation(wide)["difference_lo"].isna().all()


def test_the_ends_say_how_many_times_the_items_would_set_their_intervals_apart():
    """Most 0.5 [0.4, 0.6] against least 0.3: with least's upper end at 0.45 the facing sides reach
    0.1 + 0.15 = 0.25 across a gap of 0.2, so (0.25 / 0.2)^2 = 1.5625 times the items; at 0.35 they
    are apart already and 0.69 times would do; equal estimates never part."""
    def ends(least_hi, least=0.3):
        caps = pd.DataFrame({"model": "M", "size": "1B", "variant": "base", "method": "maw",
                             "capability": ["a", "b"], "fragility": [0.5, least], "lo": [0.4, 0.1],
                             "hi": [0.6, least_hi]})
        return F.separation(caps).iloc[0]
    assert ends(0.45)["items_factor"] == pytest.approx(1.5625) and not ends(0.45)["separated"]
    assert ends(0.35)["items_factor"] == pytest.approx((0.15 / 0.2) ** 2) and ends(0.35)["separated"]
    assert np.isnan(ends(0.6, least=0.5)["items_factor"])


def test_u_curve_is_detected_and_nothing_else(result):
    shapes = result.shapes[result.shapes["variant"] == "base"].set_index("benchmark")
    assert shapes.loc["boolq", "shape"] == "non-monotonic"
    assert shapes.loc["boolq", "trough_ratio"] == 2.4
    assert (shapes.drop(index="boolq")["shape"] == "monotone").all()


def test_perplexity_retention_is_the_cross_entropy_ratio(result):
    r = result.retention.set_index(["variant", "benchmark", "ratio"])
    assert r.loc[("base", "wikitext", 2.4), "retention"] == pytest.approx(math.log(10) / math.log(15))
    assert r.loc[("base", "hellaswag", 2.4), "retention"] == pytest.approx((0.58 - 0.25) / (0.70 - 0.25))
    assert r.loc[("base", "wikitext", 2.4), "rel_change"] == pytest.approx(0.5)


def test_instruct_compared_with_base(result):
    pair = result.base_vs_instruct.set_index("benchmark")
    assert pair.loc["mmlu", "difference"] > 0.1 and not pair.loc["mmlu", "overlap"]
    assert pair.loc["piqa", "difference"] == pytest.approx(0, abs=1e-9)


# hypothesis id -> (benchmark, capability, chance, baseline, pruned scores that hold it, pruned scores that do not)
EVIDENCE = {
    1: ("mmlu", "knowledge", 0.25, 0.60, (0.40, 0.30, 0.26), (0.60, 0.60, 0.60)),  # degrades / flat
    2: ("lambada_openai", "context", 0.0, 0.60, (0.60, 0.595, 0.59), (0.40, 0.25, 0.10)),  # preserved / lost
    3: ("truthfulqa_mc2", "truthfulness", 0.25, 0.35, (0.40, 0.42, 0.41), (0.34, 0.32, 0.30)),  # improves / not
    4: ("boolq", "reading QA", 0.5, 0.80, (0.62, 0.56, 0.76), (0.70, 0.62, 0.56)),  # U-curve / monotone
}


@pytest.mark.parametrize("hid", sorted(EVIDENCE))
def test_verdicts_are_computed_not_assumed(result, hid):
    """Each hypothesis: supported with its evidence, not supported with the evidence taken out of
    the same benchmark's curve, and no data without the benchmark."""
    bench, cap, chance, base, holds, fails = EVIDENCE[hid]
    others = [r for r in synthetic() if r["benchmark"] != bench]

    def verdict(pruned) -> str:
        rows = others + (bench_rows(bench, cap, chance, "higher", base, pruned) if pruned else [])
        return analyse(pd.DataFrame(rows, columns=list(COLUMNS)), n_boot=100).hypotheses.set_index("id").at[hid, "verdict"]

    assert (verdict(holds), verdict(fails), verdict(None)) == ("supported", "not supported", "no data")
    fixture = result.hypotheses.set_index("id").at[hid, "verdict"]  # base and instruct, as TRUTH has them
    assert fixture == ("supported" if bench in TRUTH else "no data")


def _curves(stderr: float, stopped_last: bool = False) -> dict:
    """Three curves, one per retention form: chance-normalised accuracy, log-perplexity, and a
    baseline too close to chance for headroom (plain ratio); every stderr set to ``stderr``."""
    rows = (bench_rows("hellaswag", "commonsense", 0.25, "higher", 0.70, (0.66, 0.58, 0.48))
            + bench_rows("wikitext", "language modelling", float("nan"), "lower", 10.0, (12.0, 15.0, 20.0))
            + bench_rows("near", "reading QA", 0.5, "higher", 0.505, (0.50, 0.45, 0.40)))
    rows = [r | {"stderr": stderr, "chance": float("nan") if r["direction"] == "lower" else r["chance"]} for r in rows]
    if stopped_last:  # the narrowest hellaswag trial was stopped as catastrophic: no score
        rows[3] |= {"score": float("nan"), "status": "stopped: catastrophic"}
    return {key[4]: curve for key, curve in F.curves(F.retention(pd.DataFrame(rows, columns=list(COLUMNS)))).items()}


def test_retention_draws_without_noise_are_each_forms_retention():
    by_hand = {"hellaswag": [1, (0.66 - 0.25) / 0.45, (0.58 - 0.25) / 0.45, 0.0],  # the stopped point: the floor
               "wikitext": [1] + [math.log(10) / math.log(p) for p in (12.0, 15.0, 20.0)],
               "near": [1] + [s / 0.505 for s in (0.50, 0.45, 0.40)]}
    for bench, curve in _curves(0.0, stopped_last=True).items():
        assert curve["form"].iloc[1] == {"hellaswag": "chance", "wikitext": "log", "near": "ratio"}[bench]
        draws, paired = F.retention_draws(curve, 5, np.random.default_rng(0))
        assert draws.shape == (5, 4) and paired == 0  # no item scores: drawn from the stderrs
        np.testing.assert_allclose(draws, np.broadcast_to(by_hand[bench], (5, 4)), rtol=1e-12)


def test_retention_draws_resample_score_and_baseline():
    curve = _curves(0.01)["hellaswag"]
    draws, _ = F.retention_draws(curve, 20_000, np.random.default_rng(0))
    # At 0.58: r = (s - c) / (b - c), so var r ~ se^2 / h^2 + (s - c)^2 se^2 / h^4 (both resampled)
    h, d, se = 0.45, 0.33, 0.01
    assert draws[:, 2].mean() == pytest.approx(d / h, abs=2e-3)
    assert draws[:, 2].std() == pytest.approx(math.sqrt(se**2 / h**2 + d**2 * se**2 / h**4), rel=0.05)
    assert (draws[:, 0] == 1).all()  # the baseline anchors every curve at 1


def _paired_curve(pruned_items: list, chance: float = 0.0) -> pd.DataFrame:
    return next(iter(F.curves(F.retention(_paired_rows(pruned_items, chance))).values()))


def _paired_rows(pruned_items: list, chance: float = 0.0) -> pd.DataFrame:
    """A baseline right on items 0-199 of 400, and pruned models given by their item scores (None:
    a trial stopped before it scored any); each row's stderr is the binomial one."""
    base = np.r_[np.ones(200), np.zeros(200)]
    points = [base, *pruned_items]
    scores = [float(np.mean(p)) if p is not None else float("nan") for p in points]
    rows = bench_rows("lambada", "in-context", chance, "higher", scores[0], scores[1:])
    for row, p in zip(rows, points):
        row |= {"stderr": math.sqrt(row["score"] * (1 - row["score"]) / 400) if p is not None else float("nan"),
                "items": None if p is None else {f"lambada/{i}": float(v) for i, v in enumerate(p)}}
        if p is None:
            row["status"] = "stopped: catastrophic"
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_paired_draws_cancel_what_the_baseline_and_the_pruned_model_share():
    same = np.r_[np.ones(200), np.zeros(200)]
    loses_50 = np.r_[np.ones(150), np.zeros(250)]  # right on 150 of the baseline's 200, nothing new
    draws, paired = F.retention_draws(_paired_curve([same, loses_50, None]), 20_000, np.random.default_rng(0))
    assert paired == 400
    assert (draws[:, 1] == 1).all()  # answers exactly as the baseline: retention 1 in every resample
    assert (draws[:, 3] == 0).all()  # stopped as catastrophic: the floor
    # r = kept / baseline's right among each resample's items: ~ Binomial(200, 0.75) / 200
    assert draws[:, 2].mean() == pytest.approx(0.75, abs=2e-3)
    assert draws[:, 2].std() == pytest.approx(math.sqrt(0.75 * 0.25 / 200), rel=0.05)
    unpaired = math.sqrt((0.375 * 0.625 / 400) / 0.25 + 0.375**2 * (0.25 / 400) / 0.5**4)
    assert draws[:, 2].std() < unpaired / 1.8  # what treating the two scores as independent would say


def test_paired_draws_need_every_scored_point_to_have_its_items():
    curve = _paired_curve([np.r_[np.ones(150), np.zeros(250)]] * 3)
    curve.at[2, "items"] = None  # one trial from a source that kept no item scores
    assert F.retention_draws(curve, 10, np.random.default_rng(0))[1] == 0
    few = {k: v for k, v in list(curve.at[1, "items"].items())[:F.MIN_PAIRED - 1]}
    curve["items"] = [few] * len(curve)
    assert F.retention_draws(curve, 10, np.random.default_rng(0))[1] == 0  # too few shared items to resample


def test_curve_scores_say_how_their_interval_was_drawn():
    scores = F.score_curves(F.retention(_paired_rows([np.r_[np.ones(150), np.zeros(250)]] * 3)), n_boot=200)[0]
    assert scores["paired_items"].tolist() == [400]
    assert F.score_curves(F.retention(pd.DataFrame(synthetic(), columns=list(COLUMNS))), n_boot=20)[0]["paired_items"].eq(0).all()


def test_mean_retention_is_the_area_over_the_ratio_span():
    ratios, y = np.array([4.0, 3.0, 1.0]), np.array([1.0, 0.5, 0.0])  # widest first, as curves are
    assert F.mean_retention(ratios, y) == pytest.approx(((0 + 0.5) / 2 * 2 + (0.5 + 1) / 2 * 1) / 3)
    assert F.mean_retention(np.array([2.0]), np.array([0.7])) == pytest.approx(0.7)  # one point: itself


# ---------------------------------------------------------------- MLflow sweep -> report

def _log_sweep(uri: str, experiment: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    # Artifacts beside the store (a bare SQLite experiment would default to ./mlruns in the cwd).
    artifacts = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    exp = client.create_experiment(experiment, artifact_location=artifacts.as_uri())
    parent = client.create_run(exp, tags={"glu_ray.role": "sweep"}).info.run_id
    for ratio, method, status in [(4.0, None, "completed"), (3.2, "maw", "completed"),
                                  (2.4, "maw", "completed"), (1.6, "maw", "stopped: catastrophic")]:
        # hidden 10, intermediate 40: widths 32, 24, 16 are exactly the ratios 3.2, 2.4, 1.6
        cfg = TrialConfig(model="/m/tiny", model_name="tiny", metric=method, width=Width(round(ratio * 10), 40, 10),
                          num_params=1_240_000_000, variant="base", eval=EvalSpec(suite="study"))
        tags = {"glu_ray.role": "trial", "mlflow.parentRunId": parent, "glu_ray.status": status,
                TRIAL_CONFIG_TAG: json.dumps(cfg.to_dict())}
        run = client.create_run(exp, tags=tags).info.run_id
        ppl = {4.0: 10.0, 3.2: 12.0, 2.4: 15.0, 1.6: 900.0}[ratio]
        client.log_metric(run, "wikitext/word_perplexity", ppl * 2, step=0)  # an earlier stage
        client.log_metric(run, "wikitext/word_perplexity", ppl, step=1)  # latest value wins
        if not status.startswith("stopped"):
            acc = {4.0: 0.6, 3.2: 0.45, 2.4: 0.35}[ratio]
            client.log_metric(run, "mmlu/acc", acc, step=2)
            client.log_metric(run, "mmlu/acc_stderr", 0.004, step=2)
            right = round(acc * 20)  # the trial's item scores: its accuracy, item by item
            client.log_dict(run, {"stage2": {"mmlu": {f"mmlu_x/{i}": float(i < right) for i in range(20)}}},
                            "item_scores.json")
    return parent


def test_mlflow_sweep_loads_and_report_is_logged_to_parent(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = _log_sweep(uri, "sweep-a")
    df = from_mlflow("sweep-a", uri)
    assert sweep_run_id("sweep-a", uri) == parent
    wt = df[df["benchmark"] == "wikitext"].set_index("expansion_ratio")["score"]
    assert wt[3.2] == 12.0 and wt[4.0] == 10.0
    assert df.loc[df["method"] == "baseline", "size"].iloc[0] == "1.24B"
    stopped = df[df["status"] == "stopped: catastrophic"]
    assert stopped.loc[stopped["benchmark"] == "mmlu", "score"].isna().all()  # never reached
    items = df[(df["benchmark"] == "mmlu") & (df["status"] == "completed")].set_index("expansion_ratio")["items"]
    assert {r: sum(v.values()) for r, v in items.items()} == {4.0: 12, 3.2: 9, 2.4: 7}
    assert df.loc[df["benchmark"] == "wikitext", "items"].isna().all()  # a perplexity: no item scores

    assert main(["report", "--experiment", "sweep-a", "--tracking-uri", uri, "--out", str(tmp_path / "r")]) == 0
    from mlflow import MlflowClient
    logged = {f.path for f in MlflowClient(uri).list_artifacts(parent, "report")}
    assert {"report/report.md", "report/report.html", "report/retention_heatmap.png"} <= logged
    ret = pd.read_csv(tmp_path / "r" / "retention.csv")
    floor = ret[(ret["benchmark"] == "mmlu") & (ret["ratio"] == 1.6)]
    assert floor["retention"].tolist() == [0.0]  # the stopped trial counts as broken
    assert "items" not in ret  # item by item they stay in MLflow: the CSV keeps one row a point
    hier = pd.read_csv(tmp_path / "r" / "hierarchy.csv").set_index("benchmark")
    assert hier.at["mmlu", "paired_items"] == 20 and hier.at["wikitext", "paired_items"] == 0


def test_what_the_items_plan_left_out_stays_out_though_its_floor_items_look_above_chance(tmp_path, monkeypatch):
    """The sweep run's items_by_power.json left MMLU out (its pilot at chance); the trials scored it
    on the floor's few items, where the baseline's 0.6 looks informative. The plan's verdict, read
    on more items, stands: MMLU is listed as left out with the plan's reason and is in no hierarchy
    or audit; the sweep's own path (from_sweep) marks it the same way."""
    from mlflow import MlflowClient

    from analysis import from_sweep
    from analysis.stop_audit import audit_points

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = _log_sweep(uri, "sweep-p")
    why = "left out: not above chance by 2 stderrs (0.260 vs 0.25 at 20 items)"
    plans = {"/m/tiny": {"tasks": [{"name": "mmlu", "score": 0.26, "left_out": True, "why": why},
                                   {"name": "wikitext", "score": 10.0, "left_out": False, "why": ""}]}}
    MlflowClient(uri).log_dict(parent, plans, "items_by_power.json")
    df = from_mlflow("sweep-p", uri)
    a = analyse(df, n_boot=50)
    reason = "the items plan left it out (pilot 0.260): not above chance by 2 stderrs (0.260 vs 0.25 at 20 items)"
    assert a.left_out[["benchmark", "why"]].values.tolist() == [["mmlu", reason]]
    assert set(a.hierarchy["benchmark"]) == {"wikitext"}
    by_wikitext = df[df["benchmark"] != "ppl"]  # the audit's signal: the only perplexity with values here
    assert audit_points(by_wikitext).empty  # MMLU was the runs' only accuracy
    assert len(audit_points(by_wikitext.assign(planned_out=""))) == 2  # without the plan: both completed runs
    cfg = TrialConfig(model="/m/tiny", model_name="tiny", metric=None, width=Width(40, 40, 10), num_params=1e9,
                      variant="base", eval=EvalSpec(suite="study"))
    rows = {cfg.key: {"mmlu/acc": 0.6, "status": "completed"}}
    assert from_sweep([cfg], rows, plans)["planned_out"].tolist() == [reason]
    assert from_sweep([cfg], rows)["planned_out"].tolist() == [""]
    folder = tmp_path / "trial"  # the sweep's own path reads the trial's item scores from its folder
    folder.mkdir()
    (folder / "item_scores.json").write_text(json.dumps({"stage1": {"mmlu": {"mmlu_x/0": 1.0, "mmlu_x/1": 0.0}}}))
    assert from_sweep([replace(cfg, artifact_dir=str(folder))], rows)["items"].tolist() == [{"mmlu_x/0": 1.0, "mmlu_x/1": 0.0}]

    from analysis import plots

    legends, save = {}, plots._save  # each figure's legend labels, as it is saved

    def keep(fig, path):
        legends[path.name] = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    write_report(df, tmp_path / "report", n_boot=50)
    assert legends["retention_curves.png"] == ["tiny maw wikitext"]  # the method named; MMLU not drawn
    assert "mmlu" in (tmp_path / "report" / "left_out.csv").read_text()


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["report", "--experiment", "nope", "--tracking-uri", uri, "--out", str(tmp_path)]) == 2
    assert main(["report", "--lm-eval-results", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", "--lm-eval-results", str(tmp_path / "empty"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("glu-ray report: error:") == 3 and "Traceback" not in err


# ---------------------------------------------------------------- lm-eval output files

def _model_dir(path, intermediate: int, prune: dict | None = None):
    path.mkdir(parents=True)
    config = dict(model_type="llama", hidden_size=64, intermediate_size=intermediate,
                  num_hidden_layers=2, num_attention_heads=4, vocab_size=128)
    (path / "config.json").write_text(json.dumps(config))
    if prune:
        (path / "glu_ray_prune.json").write_text(json.dumps(prune))
    return path


def _results(out, model_dir, mmlu: float) -> None:
    doc = {"results": {"mmlu": {"alias": "mmlu", "acc,none": mmlu, "acc_stderr,none": 0.004},
                       "wikitext": {"word_perplexity,none": 10 / mmlu, "word_perplexity_stderr,none": "N/A"}},
           "config": {"model": "hf", "model_args": f"pretrained={model_dir},dtype=float32"}}
    folder = out / model_dir.name
    folder.mkdir(parents=True)
    (folder / "results_2025-01-01T00-00-00.json").write_text(json.dumps(doc))


def test_lm_eval_results_pair_pruned_models_with_their_baseline(tmp_path):
    base = _model_dir(tmp_path / "models" / "tiny-base", 256)
    pruned = _model_dir(tmp_path / "models" / "pruned-x", 154, dict(
        metric="maw", width=154, expansion_ratio=2.40625, pruning_pct=39.8, params_before=5_000_000))
    _results(tmp_path / "out", base, 0.6)
    _results(tmp_path / "out", pruned, 0.4)
    df = from_lm_eval(tmp_path / "out")
    assert set(df["model"]) == {"tiny-base"} and set(df["size"]) == {"5M"}
    row = df[(df["method"] == "maw") & (df["benchmark"] == "mmlu")].iloc[0]
    assert (row["expansion_ratio"], row["width"], row["score"], row["stderr"]) == (2.40625, 154, 0.4, 0.004)
    assert df[df["method"] == "baseline"]["expansion_ratio"].iloc[0] == 4.0
    assert write_report(df, tmp_path / "rep", n_boot=50).is_file()


def test_baselines_that_score_zero_give_a_clear_error_not_a_crash(tmp_path):
    """A tiny sweep can leave every baseline at 0 accuracy: nothing to retain, nothing to rank."""
    import pandas as pd

    from analysis.findings import analyse
    from analysis.report import write_report
    from glu_ray.errors import GluRayError

    rows = [dict(model="t", size="1", variant="base", method=m, expansion_ratio=r, pruning_pct=0.0, width=1,
                 benchmark="tiny_mc", capability="reasoning", score=0.0, stderr=0.1, direction="higher",
                 chance=0.25, status="completed") for m, r in (("baseline", 4.0), ("maw", 2.0), ("maw", 1.0))]
    df = pd.DataFrame(rows)
    assert analyse(df, n_boot=10).hierarchy.empty
    with pytest.raises(GluRayError, match="no pruned run shares"):
        write_report(df, tmp_path)


def test_baselines_not_above_chance_by_2_stderrs_are_left_out_of_the_hierarchy_and_said_why(tmp_path):
    """arc_c at 0.28 (chance 0.25, stderr 0.02) leads chance by 1.5 stderrs: out, with its numbers;
    arc_e at 0.35 leads by 5: in; the perplexity, which has no chance, stays."""
    rows = synthetic("base") + bench_rows("arc_c", "reasoning", 0.25, "higher", 0.28, (0.27, 0.26, 0.25)) \
        + bench_rows("arc_e", "reasoning", 0.25, "higher", 0.35, (0.33, 0.30, 0.27)) \
        + bench_rows("gsm8k", "math", 0.0, "higher", 0.0, (0.0, 0.0, 0.0))
    rows = [r | {"stderr": 0.02} if r["benchmark"].startswith("arc") else r for r in rows]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    a = analyse(df, n_boot=100)
    assert set(a.hierarchy["benchmark"]) == {"mmlu", "hellaswag", "piqa", "boolq", "wikitext", "arc_e"}
    # gsm8k at 0 with chance 0 has no retention at all (0 / 0): it is listed all the same
    assert a.left_out[["benchmark", "score", "chance", "stderr"]].values.tolist() == [["arc_c", 0.28, 0.25, 0.02],
                                                                                     ["gsm8k", 0.0, 0.0, 0.005]]
    assert "not above chance 0.25 by 2 stderrs (0.020)" in a.left_out["why"].iloc[0]
    assert a.capabilities.set_index("capability").loc["reasoning", "benchmarks"] == "arc_e"
    assert "arc_c" in set(a.retention["benchmark"])  # its points are still in the study's delta table
    text = write_report(df, tmp_path, n_boot=100).read_text()
    section = text.split("## Left out of the hierarchy: baseline not above chance")[1].split("##")[0]
    assert "arc_c" in section and "0.28" in section and "arc_e" not in section
    assert (tmp_path / "left_out.csv").is_file()


def test_runs_that_did_not_finish_are_left_out_of_every_table_and_listed(tmp_path):
    """A trial cut off while running scored mmlu at 1.0x only, and a failed one nothing: counted,
    the first would stretch mmlu's curve to 1.0x alone. The report reads as if neither existed, and
    lists both with what they had scored."""
    rows = synthetic("base")
    cut = bench_rows("mmlu", *TRUTH["mmlu"][:4], (0.25, 0.25, 0.25))[1:2]
    cut = [r | {"expansion_ratio": 1.0, "width": 64.0, "status": "running"} for r in cut]
    failed = [r | {"expansion_ratio": 0.8, "width": 51.0, "status": "failed", "score": float("nan")} for r in cut]
    alone = write_report(pd.DataFrame(rows, columns=list(COLUMNS)), tmp_path / "alone", n_boot=50)
    text = write_report(pd.DataFrame(rows + cut + failed, columns=list(COLUMNS)), tmp_path / "with", n_boot=50).read_text()
    assert pd.read_csv(tmp_path / "with" / "hierarchy.csv").equals(pd.read_csv(alone.parent / "hierarchy.csv"))
    listed = pd.read_csv(tmp_path / "with" / "unfinished.csv")
    assert listed[["expansion_ratio", "status", "scored"]].values.tolist() == [[0.8, "failed", "nothing"],
                                                                              [1.0, "running", "mmlu"]]
    section = text.split("## Left out: runs that did not finish (table)")[1].split("##")[0]
    assert "running" in section and "failed" in section
    assert "None: every run completed" in alone.read_text()


def test_ratio_keys_keep_two_decimals_unless_a_models_widths_need_more():
    from analysis.tidy import ratio_key

    df = pd.DataFrame({"model": ["big"] * 3 + ["small"] * 4,
                       "expansion_ratio": [4.0, 2.1333333, 2.4, 1536 / 576, 1533 / 576, 1531 / 576, 1531 / 576]})
    # big: 2 decimals tell its widths apart (the study's 2.13x); small: 1533 and 1531 neurons are
    # 2.661x and 2.658x, both 2.66 at 2 decimals; its repeated width (a seed) stays one point
    assert ratio_key(df).tolist() == [4.0, 2.13, 2.4, 2.667, 2.661, 2.658, 2.658]


def test_paired_intervals_cover_the_true_fragility_about_95_percent_of_the_time():
    """Coverage, simulated: a population of items; the baseline answers half of them, each pruned
    model loses some of those and gains a few others. Each replication scores 300 random items;
    its paired interval should hold the population's fragility ~95% of the time (the independent
    stderrs' interval, far wider, holds it nearly always)."""
    rng = np.random.default_rng(7)
    population = 200_000
    base = rng.random(population) < 0.5
    pruned = [np.where(base, rng.random(population) > lose, rng.random(population) < gain)
              for lose, gain in ((0.1, 0.05), (0.3, 0.1), (0.5, 0.2))]
    truth = [1.0] + [(p.mean() - 0.25) / (base.mean() - 0.25) for p in pruned]
    true_fragility = 1 - F.mean_retention(np.array([4.0, *RATIOS]), np.array(truth))
    held = {"paired": 0, "independent": 0}
    for _ in range(200):
        pick = rng.choice(population, 300, replace=False)
        rows = _scored_rows([base[pick], *(p[pick] for p in pruned)])
        for how, df in (("paired", rows), ("independent", rows.assign(items=None))):
            score = F.score_curves(F.retention(df), n_boot=200, seed=int(rng.integers(1 << 30)))[0].iloc[0]
            held[how] += score["lo"] <= true_fragility <= score["hi"]
    assert 0.88 * 200 <= held["paired"] <= 0.99 * 200, held
    assert held["independent"] >= 0.99 * 200, held


def _scored_rows(points: list) -> pd.DataFrame:
    """A 4-way multiple-choice benchmark's curve (baseline, then RATIOS) from each model's answers."""
    scores = [float(np.mean(p)) for p in points]
    rows = bench_rows("hellaswag", "commonsense", 0.25, "higher", scores[0], scores[1:])
    for row, p in zip(rows, points):
        row |= {"stderr": math.sqrt(row["score"] * (1 - row["score"]) / len(p)),
                "items": {f"hellaswag/{i}": float(v) for i, v in enumerate(p)}}
    return pd.DataFrame(rows, columns=list(COLUMNS))
