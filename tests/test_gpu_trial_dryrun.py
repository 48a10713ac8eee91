"""The GPU measurement kit: synthetic lm-eval requests, and the whole CPU dry run (the efficiency stage
itself is tested in test_efficiency.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tiny_llama
from glu_ray import vocab as V
from glu_ray.cost.workloads import load_workloads

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from gpu_requests import build_instances, make_lm, run_workload, word_tokenizer  # noqa: E402


def test_synthetic_requests_have_the_profiled_counts_and_lengths():
    tok = word_tokenizer(512)
    mmlu = load_workloads().get("mmlu").scaled(0.001)  # 14 questions x 4 one-token choices
    reqs = build_instances(mmlu, 512, "typical")
    assert len(reqs) == 14 * 4 and {r.request_type for r in reqs} == {"loglikelihood"}
    ctx, cont = reqs[0].args
    assert len(tok(ctx)["input_ids"]) == 620 and len(tok(cont)["input_ids"]) == 1
    assert len({r.args[0] for r in reqs[:4]}) == 1  # the 4 choices share their context
    wino = build_instances(load_workloads().get("winogrande").scaled(0.002), 512, "typical")
    assert wino[0].args[0] != wino[1].args[0]  # partial evaluation: contexts differ
    gen = build_instances(load_workloads().get("gsm8k_cot").scaled(0.002), 512, "max")
    assert gen[0].request_type == "generate_until" and gen[0].args[1]["max_gen_toks"] == 256
    assert gen[0].args[1]["until"] == ["Q:", "</s>", "<|im_end|>"]


def test_hflm_runs_each_request_type_on_a_tiny_model():
    model = make_tiny_llama(vocab_size=512)
    lm = make_lm(model, word_tokenizer(512), batch_size=4, max_length=64)
    table = load_workloads()
    for task in ("boolq", "wikitext", "ifeval"):
        w = table.get(task).scaled(0.002)
        r = run_workload(lm, w, gen_mode="typical", params=1000, peak_flops=1e12, max_gen=5)
        assert r.seconds > 0 and r.tok_s > 0 and r.peak_fraction is not None
        if task == "ifeval":  # generation capped to 5 tokens, prompt cut to fit max_length
            assert (r.gen_tokens, r.decode_steps) == (5 * w.docs, math.ceil(w.docs / 4) * 5)
            assert r.prefill_tokens == w.docs * min(w.context_tokens, 64 - 5 - 1)
        if task == "boolq":
            assert r.loglik_requests == 2 * w.docs


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path):
    out = tmp_path / "dry.json"
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_trial.py"), "--dry-run", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for marker in ("[trial] 1b", "[trial] 3b", "[speed] 3b", "[packing] 1b", "[cost] grid full, generation typical: Projected GPU cost of 76 trials"):
        assert marker in proc.stdout
    data = json.loads(out.read_text())
    instruct = [w.task for w in load_workloads().resolve("instruct")]
    for t in data["trials"]:
        assert [b["task"] for b in t["benchmarks"]] == instruct
        assert all(b["seconds"] > 0 and b["tokens"] > 0 for b in t["benchmarks"])
    assert data["packing"]["k"] == 4 and len(data["packing"]["peak_mem_mb"]) == 4
    assert data["packing"]["throughput_ratio"] > 0
    for model in ("1b", "3b"):
        rows = [r for r in data["speed"] if r["model"] == model]
        assert [r["pruning_pct"] for r in rows] == [0, 10, 20, 30, 40, 50, 60]
        params = [r["params_total"] for r in rows]
        assert params == sorted(params, reverse=True) and len(set(params)) == 7
        for r in rows:  # the sweep's efficiency stage, batches 1 and 2 in the dry run
            assert [t["batch"] for t in r["throughput"]] == [1, 2]
            assert r["metrics"][V.efficiency_key(V.DECODE_TOK_S, 2)] > 0
            for t in r["throughput"]:  # energy: measured where RAPL is readable, else None (never 0)
                assert t["gen_len"] == 8 and (t["energy"]["status"] == "unavailable") == (t["energy"]["joules"] is None)
    # The JSON the kit writes is what calibrates the cost model once it comes from a GPU.
    from glu_ray.cost.gpu_cost import CostProfile, calibrate

    cal = calibrate(CostProfile.default(), {**data, "dry_run": False, "device": "NVIDIA H200"})
    assert set(cal.calibration) == set(instruct)
    assert cal.packing_gain(0.25) == (data["packing"]["throughput_ratio"],) * 2
