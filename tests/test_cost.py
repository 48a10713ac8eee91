"""The GPU cost model: workload arithmetic, the analytic formula, stopping/packing, calibration."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from glu_ray.cost.gpu_cost import (
    CostProfile, TrialCost, analytic_seconds, calibrate, estimate_sweep, gpu_spec, trial_from_config, with_gpu,
)
from glu_ray.errors import GluRayError
from glu_ray.cost.workloads import Workload, load_workloads, parse_workloads

# Llama-3.2-1B's real sizes (the published config), used as plain numbers.
P1B, H1B, I1B, L1B = 1_235_814_400, 2048, 8192, 16


def trial(width=I1B, *, fraction=1.0, baseline=False, benchmarks="base", params=P1B, layers=L1B, hidden=H1B):
    return TrialCost(name=f"m/{width}", model="m", num_params=params, hidden=hidden, intermediate=I1B,
                     layers=layers, width=width, benchmarks=benchmarks, gpu_fraction=fraction, baseline=baseline)


def test_shipped_workloads_match_task_definitions():
    table = load_workloads()
    mmlu = table.get("mmlu")
    assert (mmlu.docs, mmlu.choices, mmlu.num_fewshot) == (14042, 4, 5)
    assert mmlu.requests == 4 * 14042
    assert mmlu.forwards_per_doc() == 1  # single-token choices share one forward (logits cache)
    assert mmlu.prefill_tokens() == 14042 * (620 + 1)
    assert table.get("hellaswag").forwards_per_doc() == 4  # multi-token endings: one pass each
    assert table.get("winogrande").forwards_per_doc() == 2  # options change the context
    gsm = table.get("gsm8k_cot")
    assert (gsm.docs, gsm.num_fewshot, gsm.max_gen_toks) == (1319, 8, 256)
    assert gsm.decode_steps(32, "max") == math.ceil(1319 / 32) * 256
    assert table.get("ifeval").gen_tokens("max") == 1280
    assert [w.task for w in table.resolve("instruct")][-1] == "ifeval"
    assert "ifeval" not in [w.task for w in table.resolve("base")]


def test_workload_validation_and_scaling():
    with pytest.raises(GluRayError, match="kind"):
        Workload(task="x", kind="ranking", docs=1, context_tokens=1)
    with pytest.raises(GluRayError, match="typical_gen_tokens"):
        Workload(task="x", kind="generate", docs=1, context_tokens=1, max_gen_toks=8, typical_gen_tokens=9)
    with pytest.raises(GluRayError, match="unknown suite"):
        load_workloads().resolve("nope")
    with pytest.raises(GluRayError, match="no workload profile"):
        parse_workloads({"workloads": {}, "suites": {"s": ["missing"]}})
    assert load_workloads().get("mmlu").scaled(0.001).docs == 14
    assert load_workloads().get("ifeval").scaled(0).docs == 1


def test_gpu_spec_longest_name_wins():
    assert gpu_spec("NVIDIA H100 PCIe").peak_flops == 756e12
    assert gpu_spec("NVIDIA H100 80GB HBM3").mem_bw == 3350e9
    assert gpu_spec("NVIDIA H200").peak_flops == 989e12
    assert gpu_spec("Some NPU") is None
    with pytest.raises(GluRayError, match="no datasheet"):
        CostProfile.default("Some NPU")


def test_analytic_formula_prefill_and_decode_bounds():
    p = CostProfile.default()
    s = analytic_seconds(prefill_tokens=10**6, requests=100, decode_steps=0, params=10**9, layers=16, profile=p)
    assert s.prefill == pytest.approx(2e15 / (p.gpu.peak_flops * p.prefill_util) + 100 * p.request_overhead_s)
    assert s.decode == 0
    launch = analytic_seconds(prefill_tokens=0, requests=0, decode_steps=10, params=10**9, layers=16, profile=p)
    assert launch.decode == pytest.approx(10 * (p.decode_s_fixed + 16 * p.decode_s_per_layer))
    # A huge model on a slow-memory GPU is bandwidth-bound instead.
    slow = with_gpu(p, "NVIDIA L4")
    big = analytic_seconds(prefill_tokens=0, requests=0, decode_steps=10, params=70 * 10**9, layers=16, profile=slow)
    assert big.decode == pytest.approx(10 * 70e9 * 2 / (300e9 * p.bw_util))


def test_pruned_params_and_cheaper_pruned_trials():
    pruned = trial(baseline=True).pruned("m/40", 4916)
    assert (pruned.width, pruned.baseline, pruned.name) == (4916, False, "m/40")
    assert pruned.pruned_params == P1B - 3 * H1B * (I1B - 4916) * L1B
    est = estimate_sweep([trial(baseline=True), pruned], stopped_fraction=0)
    base, cut = est.trials
    assert cut.full.total < base.full.total
    assert set(base.per_benchmark) == {w.task for w in load_workloads().resolve("base")}


def test_stopping_and_packing_reduce_cost_and_never_touch_baselines():
    trials = [trial(baseline=True, fraction=0.25)] + [trial(w, fraction=0.25) for w in (7373, 4916, 3277)]
    est = estimate_sweep(trials, stopped_fraction=0.5)
    none = est.gpu_hours()
    assert est.gpu_hours(stopping=True) < none
    assert est.gpu_hours(packing=True) < none
    assert est.gpu_hours(stopping=True, packing=True) < est.gpu_hours(stopping=True)
    assert estimate_sweep(trials, stopped_fraction=0).gpu_hours(stopping=True) == pytest.approx(none)
    # Stopping everything costs exactly: baseline in full + stage 0 of each pruned trial.
    all_stop = estimate_sweep(trials, stopped_fraction=1.0)
    expected = all_stop.trials[0].full.total + sum(t.stage0.total for t in all_stop.trials[1:])
    assert all_stop.gpu_hours(stopping=True) == pytest.approx(expected / 3600)
    only_baselines = estimate_sweep([trial(baseline=True)], stopped_fraction=1.0)
    assert only_baselines.gpu_hours(stopping=True) == only_baselines.gpu_hours()
    whole = estimate_sweep([trial(fraction=1.0)])
    assert whole.gpu_hours(packing=True) == whole.gpu_hours()


def test_larger_model_and_instruct_suite_cost_more_and_table_prints():
    small = trial(baseline=True)
    big = trial(baseline=True, params=3_212_749_824, layers=28, hidden=3072)
    instruct = replace(small, benchmarks="instruct", model="m-instruct")
    est = estimate_sweep([small, big, instruct])
    a, b, c = (t.full.total for t in est.trials)
    assert b > a and c > a
    text = est.table()
    assert "m-instruct" in text and "early stopping" in text and "packed" in text
    with pytest.raises(GluRayError, match="stopped_fraction"):
        estimate_sweep([small], stopped_fraction=1.5)


def fake_measurement(profile, factor=2.0, device="NVIDIA H200", **extra):
    bench = dict(task="mmlu", prefill_tokens=100_000, loglik_requests=400, decode_steps=0)
    ideal = analytic_seconds(prefill_tokens=100_000, requests=400, decode_steps=0, params=P1B, layers=L1B,
                             profile=profile).total
    return {"device": device, "dry_run": False, "scale": 0.01,
            "trials": [{"params": P1B, "layers": L1B, "benchmarks": [{**bench, "seconds": factor * ideal}]}],
            "packing": {"fraction": 0.25, "throughput_ratio": 2.5}, **extra}


def test_calibration_scales_measured_tasks_and_packing():
    base = CostProfile.default()
    cal = calibrate(base, fake_measurement(base, factor=2.0))
    assert cal.factor("mmlu", P1B) == pytest.approx(2.0)
    assert cal.factor("hellaswag", P1B) == 1.0  # not measured: analytic
    assert cal.packing_gain(0.25) == (2.5, 2.5)
    assert "calibrated" in cal.source
    t = [trial(benchmarks=["mmlu"], baseline=True)]
    ratio = estimate_sweep(t, cal).trials[0].per_benchmark["mmlu"] / estimate_sweep(t, base).trials[0].per_benchmark["mmlu"]
    assert ratio == pytest.approx(2.0)
    with pytest.raises(GluRayError, match="cannot calibrate"):
        calibrate(base, fake_measurement(base, device="cpu", dry_run=True))


def test_trial_from_config_counts_parameters_from_the_config():
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True)
    t = trial_from_config(cfg, name="a", model="b", width=4916, benchmarks="base", gpu_fraction=0.25)
    assert t.num_params == P1B  # Llama-3.2-1B's published parameter count
    assert (t.hidden, t.intermediate, t.layers, t.width) == (2048, 8192, 16, 4916)


def test_tasks_without_a_profile_are_listed_not_guessed():
    est = estimate_sweep([trial(benchmarks=["mmlu", "my_task"], baseline=True)])
    assert est.trials[0].unprofiled == ("my_task",)
    assert set(est.trials[0].per_benchmark) == {"mmlu"}
    assert "not counted" in est.table() and "my_task" in est.table()
    with pytest.raises(GluRayError, match="unknown suite"):
        estimate_sweep([trial(benchmarks="nope")])


def test_full_grid_estimate_runs_offline_and_prices_every_trial():
    """`python sweeps/full_grid.py --estimate`: the study grid from bundled configs, nothing run."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(repo / "sweeps/full_grid.py"), "--estimate"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Projected GPU cost of 76 trials" in out.stdout  # 4 models x (3 metrics x 6 widths + baseline)
    for model in ("Llama-3.2-1B", "Llama-3.2-3B", "Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct"):
        assert f"  {model} " in out.stdout
    assert "early stopping" in out.stdout
