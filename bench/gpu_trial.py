"""What one sweep trial costs on a GPU, what packing trials buys, and what pruning buys at inference.

Builds Llama-3.2-1B- and 3B-shaped models from config (random init, bf16 on GPU: no weights are
downloaded anywhere), prunes them with glu_ray, and drives lm-eval's real HFLM request path with
synthetic requests shaped like each benchmark (glu_ray/cost/workloads.yaml). Three sections:
  trial    per benchmark: seconds, tokens/s, fraction of the GPU's dense bf16 peak
  packing  k trials at 1/k GPU through Ray vs one at a time: throughput ratio, peak memory
  speed    per pruning level: the sweep's efficiency stage (glu_ray.efficiency.measure): params,
           weight bytes, peak memory, energy (NVML), prefill/decode tokens/s at batch 1 and 8 with
           forced-length generation, vs the unpruned model (no answer lengths: random weights)
then the projected GPU-hours of the study grid (glu_ray.cost.gpu_cost), calibrated by this run on a GPU.

    python bench/gpu_trial.py --dry-run                 # CPU, tiny shapes, < 1 minute
    python bench/gpu_trial.py --models 1b,3b --scale 0.02 --json gpu_trial.json   # on a GPU
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
               "TQDM_DISABLE": "1"}.items():
    os.environ.setdefault(_k, _v)

import torch  # noqa: E402

from glu_ray import TargetWidth, prune, rank, resolve_width  # noqa: E402
from glu_ray.efficiency.measure import measure_efficiency  # noqa: E402
from glu_ray.efficiency.spec import EfficiencySpec  # noqa: E402
from glu_ray.models.loading import free_memory  # noqa: E402
from glu_ray.cost.workloads import load_workloads  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_requests import make_lm, run_workload, word_tokenizer  # noqa: E402

_LLAMA = dict(max_position_embeddings=131072, rope_theta=500000.0,
              tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
SHAPES = {  # the published Llama-3.2 configs' sizes
    "1b": dict(_LLAMA, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
    "3b": dict(_LLAMA, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
               num_key_value_heads=8, vocab_size=128256),
}
DRY_SHAPES = {  # same expansion ratios (4.0x, 2.67x), CPU-sized
    "1b": dict(_LLAMA, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=512, max_position_embeddings=2048),
    "3b": dict(_LLAMA, hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=512, max_position_embeddings=2048),
}
PRUNING_PCTS = (10, 20, 30, 40, 50, 60)  # the study's grid, for both model sizes


def llama_config(shape: dict):
    from transformers import LlamaConfig

    return LlamaConfig(**shape)


def build_model(config, device: str, seed: int = 0):
    """Random-init LlamaForCausalLM, created directly on ``device`` (bf16 on GPU, fp32 on CPU)."""
    from transformers import LlamaForCausalLM

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    return model.eval()


def prune_to_pct(model, pct: float, metric: str = "maw"):
    """Prune in place to ``pct``% of MLP neurons removed; sizes come from the model's config."""
    cfg = model.config
    width = resolve_width(TargetWidth(pruning_pct=pct), cfg.intermediate_size, cfg.hidden_size)
    return prune(model, rank(model, metric), width)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def suite_lm(model, *, batch_size: int, max_length: int):
    """lm-eval's HFLM around ``model`` with a word tokenizer covering its whole vocabulary."""
    return make_lm(model, word_tokenizer(model.config.vocab_size), batch_size=batch_size, max_length=max_length)


def run_suite(lm, workloads, *, gen_mode: str, peak_flops: float | None, max_gen: int | None = None):
    """Every workload through one HFLM, in order; returns BenchResults."""
    params = sum(p.numel() for p in lm.model.parameters())
    return [run_workload(lm, w, gen_mode=gen_mode, params=params, peak_flops=peak_flops, max_gen=max_gen,
                         sync=_sync) for w in workloads]


def warm_up(lm, workloads, *, gen_mode: str) -> None:
    """One document of each workload, 2 generated tokens: CUDA context, kernels and allocator are
    set up before anything is timed (a sweep trial pays this once, not per benchmark)."""
    run_suite(lm, [w.scaled(0) for w in workloads], gen_mode=gen_mode, peak_flops=None, max_gen=2)


@dataclass(frozen=True)
class Setup:
    shapes: dict
    device: str
    peak_flops: float | None
    gpu_name: str
    workloads: tuple
    args: argparse.Namespace


def section_trial(name: str, s: Setup) -> dict:
    a = s.args
    config = llama_config(s.shapes[name])
    model = build_model(config, s.device)
    report = prune_to_pct(model, a.prune_pct)
    print(f"\n[trial] {name}: {report.summary()}")
    print(f"  {'benchmark':<18}{'docs':>7}{'tokens':>11}{'seconds':>10}{'tok/s':>12}{'% peak':>8}")
    lm = suite_lm(model, batch_size=a.batch_size, max_length=a.max_length)
    warm_up(lm, s.workloads, gen_mode=a.gen)
    results = run_suite(lm, s.workloads, gen_mode=a.gen, peak_flops=s.peak_flops, max_gen=a.max_gen)
    for r in results:
        frac = "n/a" if r.peak_fraction is None else f"{100 * r.peak_fraction:.1f}"
        print(f"  {r.task:<18}{r.docs:>7}{r.tokens:>11,}{r.seconds:>10.2f}{r.tok_s:>12,.0f}{frac:>8}")
    total = sum(r.seconds for r in results)
    print(f"  {'total':<18}{'':>7}{sum(r.tokens for r in results):>11,}{total:>10.2f}")
    del model
    return {"model": name, "params": report.params_after, "layers": config.num_hidden_layers,
            "hidden": config.hidden_size, "intermediate": config.intermediate_size, "width": report.width,
            "benchmarks": [r.to_dict() for r in results], "seconds": total}


def section_packing(name: str, s: Setup) -> dict:
    from gpu_packing import measure_packing

    a = s.args
    spec = {"config": llama_config(s.shapes[name]), "seed": 0, "prune_pct": a.prune_pct,
            "workloads": tuple(w.scaled(a.pack_scale / a.scale) for w in s.workloads),
            "batch_size": a.batch_size, "max_length": a.max_length, "gen_mode": a.gen, "max_gen": a.max_gen,
            "threads": 1 if a.dry_run else None}
    cpus = a.cpus or os.cpu_count() or 1
    res = measure_packing(spec, k=a.pack_k, gpu=s.device.startswith("cuda"), cpus=cpus)
    print(f"\n[packing] {name}: {res.summary()}")
    return {"model": name, **res.to_dict()}


def section_speed(name: str, s: Setup) -> list[dict]:
    """The trial's efficiency stage at every pruning level (answer lengths need trained weights: off)."""
    a = s.args
    base = build_model(llama_config(s.shapes[name]), s.device)
    ranking = rank(base, "maw")
    spec = EfficiencySpec(prompt_len=a.prompt_len, gen_len=a.gen_len, batches=a.speed_batches, repeats=a.repeats,
                          answer_max_new_tokens=0)
    print(f"\n[speed] {name}: batches {a.speed_batches}, prompt {a.prompt_len}, {a.gen_len} generated tokens "
          f"(forced), {a.repeats} repeats; medians")
    print(f"  {'ratio':>7}{'width':>7}{'params':>15}{'weights MB':>11}{'batch':>6}{'peak MB':>10}{'prefill tok/s':>15}"
          f"{'decode tok/s':>14}{'J/token':>10}{'vs base':>17}")
    rows, ref = [], {}
    for pct in (0, *PRUNING_PCTS):
        model = copy.deepcopy(base)
        w = prune(model, ranking, resolve_width(TargetWidth(pruning_pct=pct), model.config.intermediate_size,
                                                model.config.hidden_size))
        r = measure_efficiency(model, None, spec)
        for t in r.throughput:
            ref.setdefault(t.batch, t)
            peak = "n/a" if t.memory.peak_mb is None else f"{t.memory.peak_mb:.0f}"
            joules = "n/a" if t.energy_j_per_tok is None else f"{t.energy_j_per_tok:.3g}"
            pre, dec = t.prefill_tok_s.median, t.decode_tok_s.median
            rel = f"x{pre / ref[t.batch].prefill_tok_s.median:.2f} / x{dec / ref[t.batch].decode_tok_s.median:.2f}"
            print(f"  {w.expansion_ratio:>6.2f}x{w.width:>7}{r.params:>15,}{r.weight_bytes / 2**20:>11,.1f}{t.batch:>6}"
                  f"{peak:>10}{pre:>15,.0f}{dec:>14,.0f}{joules:>10}{rel:>17}")
        rows.append({"model": name, "pruning_pct": pct, "expansion_ratio": w.expansion_ratio, "width": w.width,
                     "params_total": r.params, "metrics": r.metrics(), **r.to_dict()})
        del model
    return rows


GRIDS = {  # (size, variant, suite, GPU fraction, metrics) per model
    "full": [(size, variant, suite, frac, ("maw", "vow", "pon")) for size, frac in (("1b", 0.25), ("3b", 0.5))
             for variant, suite in (("", "base"), ("-Instruct", "instruct"))],
    # The reference study: base models, MAW only, its 13 tasks, one trial per GPU (an L4).
    "study": [(size, "", "study", 1.0, ("maw",)) for size in ("1b", "3b")],
}


def grid_trials(grid: str) -> list:
    """TrialCosts of a grid: a baseline + 6 pruning levels per metric, sizes read from the configs."""
    from glu_ray.cost.gpu_cost import trial_from_config

    trials = []
    for size, variant, suite, fraction, metrics in GRIDS[grid]:
        config = llama_config(SHAPES[size])
        model = f"Llama-3.2-{size.upper()}{variant}"
        base = trial_from_config(config, name=f"{model}/baseline", model=model, width=config.intermediate_size,
                                 benchmarks=suite, gpu_fraction=fraction, baseline=True)
        trials.append(base)
        for metric in metrics:
            for pct in PRUNING_PCTS:
                w = resolve_width(TargetWidth(pruning_pct=pct), config.intermediate_size, config.hidden_size)
                trials.append(base.pruned(f"{model}/{metric}/{pct}", w.width))
    return trials


def print_projection(measured: dict, a: argparse.Namespace) -> None:
    """A grid's GPU-hours: calibrated by this run on a GPU, analytic otherwise."""
    from glu_ray.cost.gpu_cost import CostProfile, calibrate, estimate_sweep, gpu_spec, with_gpu

    profile = CostProfile.default()
    if not measured["dry_run"] and gpu_spec(measured["device"]) is not None:
        profile = calibrate(profile, measured)
    elif not measured["dry_run"]:
        print(f"\n[cost] no datasheet entry for {measured['device']!r} in glu_ray/cost/gpu_costs.yaml: analytic projection")
    if a.cost_gpu:
        profile = with_gpu(profile, a.cost_gpu)
    profile = dataclasses.replace(profile, gen_mode=a.gen)
    est = estimate_sweep(grid_trials(a.grid), profile, stopped_fraction=a.stopped_fraction)
    print(f"\n[cost] grid {a.grid}, generation {a.gen}: " + est.table())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="1b,3b", help="comma list of: " + ", ".join(SHAPES))
    p.add_argument("--suite", default="instruct", help="workload suite (glu_ray/cost/workloads.yaml), e.g. base, instruct")
    p.add_argument("--scale", type=float, help="fraction of each benchmark's documents (default 0.02; dry run 0.002)")
    p.add_argument("--pack-scale", type=float, help="fraction for each packed trial (default scale / 2)")
    p.add_argument("--pack-k", type=int, default=4, help="trials packed on one device (each gets 1/k)")
    p.add_argument("--sections", default="trial,packing,speed,cost")
    p.add_argument("--grid", choices=tuple(GRIDS), default="full", help="grid the cost section projects")
    p.add_argument("--cost-gpu", help="project on this GPU's datasheet figures (e.g. 'NVIDIA L4', the study's)")
    p.add_argument("--batch-size", type=int, help="HFLM batch size (default 32; dry run 8)")
    p.add_argument("--max-length", type=int, help="HFLM max_length (default 2048; dry run 128)")
    p.add_argument("--gen", choices=("typical", "max"), default="typical", help="generation length per request")
    p.add_argument("--max-gen", type=int, help="cap on tokens generated per request (default none; dry run 16)")
    p.add_argument("--prune-pct", type=float, default=30.0, help="pruning of the timed trial")
    p.add_argument("--peak-tflops", type=float, help="override the GPU's dense bf16 peak")
    p.add_argument("--cpus", type=int, help="CPUs Ray may use (default: all)")
    p.add_argument("--stopped-fraction", type=float, default=0.5, help="share of pruned trials early stopping ends")
    p.add_argument("--json", help="write all results here")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, small counts: exercises the code")
    a = p.parse_args(argv)
    dry = a.dry_run
    defaults = dict(scale=0.002 if dry else 0.02, batch_size=8 if dry else 32, max_length=128 if dry else 2048,
                    prompt_len=32 if dry else 512, gen_len=8 if dry else 64,
                    repeats=2 if dry else 5, max_gen=16 if dry else None)
    for k, v in defaults.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    a.pack_scale = a.pack_scale or a.scale / 2
    a.speed_batches = (1, 2) if dry else (1, 8)
    return a


def make_setup(a: argparse.Namespace) -> Setup:
    from glu_ray.cost.gpu_cost import gpu_spec

    names = [m.strip() for m in a.models.split(",") if m.strip()]
    if unknown := [m for m in names if m not in SHAPES]:
        raise SystemExit(f"unknown model shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    if a.dry_run:
        device, gpu_name = "cpu", "cpu"
    elif torch.cuda.is_available():
        device, gpu_name = "cuda", torch.cuda.get_device_name()
    else:
        raise SystemExit("no CUDA device: run with --dry-run on CPU (the real shapes need a GPU)")
    spec = gpu_spec(gpu_name) if device == "cuda" else None
    peak = a.peak_tflops * 1e12 if a.peak_tflops else (spec.peak_flops if spec else None)
    workloads = tuple(w.scaled(a.scale) for w in load_workloads().resolve(a.suite))
    shapes = {n: (DRY_SHAPES if a.dry_run else SHAPES)[n] for n in names}
    return Setup(shapes, device, peak, gpu_name, workloads, a)


def main(argv=None) -> dict:
    a = parse_args(argv)
    s = make_setup(a)
    if a.dry_run:
        torch.set_num_threads(1)  # tiny matmuls: threads only add contention on a shared CPU
    sections = {x.strip() for x in a.sections.split(",")}
    peak = "unknown" if s.peak_flops is None else f"{s.peak_flops / 1e12:.0f} TFLOP/s"
    print(f"device {s.gpu_name} (peak {peak}); suite {a.suite} at scale {a.scale:g}; batch {a.batch_size}; "
          f"max_length {a.max_length}; generation {a.gen}{'; DRY RUN (tiny shapes)' if a.dry_run else ''}")
    out = {"device": s.gpu_name, "dry_run": a.dry_run, "scale": a.scale, "suite": a.suite, "batch_size": a.batch_size,
           "max_length": a.max_length, "gen_mode": a.gen, "peak_flops": s.peak_flops, "argv": sys.argv[1:],
           "trials": [], "speed": []}
    start = time.perf_counter()
    for name in s.shapes:
        if "trial" in sections:
            out["trials"].append(section_trial(name, s))
        if "speed" in sections:
            out["speed"] += section_speed(name, s)
        free_memory()  # the next model size gets the whole GPU
    if "packing" in sections:  # one model: the smallest asked for, as the sweep packs 1B at 0.25
        out["packing"] = section_packing(next(iter(s.shapes)), s)
    if "cost" in sections:
        print_projection(out, a)
    out["seconds"] = time.perf_counter() - start
    print(f"\ntotal {out['seconds']:.1f}s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {a.json}")
    return out


if __name__ == "__main__":
    main()
