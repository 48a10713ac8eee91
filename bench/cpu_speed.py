"""Stage-0 speed on CPU, side by side: dtype x torch threads x batch size, and trials in parallel.

    python bench/cpu_speed.py --model DIR [--docs 2] [--max-length 1024] [--batches 1,4,8,16]
                              [--threads 1,2] [--dtypes float32,bfloat16] [--parallel 2] [--generate 32]

Each row scores the same WikiText-2 pages with glu-ray's fast perplexity (stage 0 of a trial) and
reports scored tokens per wall second and per CPU second of the process (the second is what
a shared, loaded machine distorts least), and the word perplexity (bf16 changes the numbers a little; the
column shows how much). ``--parallel N`` also runs N one-thread processes at once, as N packed Ray
trials would, and reports their summed tokens/s: the figure to compare with one trial on N threads.
``--generate K`` times greedy decoding of K new tokens (IFEval/GSM8K-style generation) per setting.
The CPU's vector extensions are printed first: bf16 is fast only where the CPU has bf16 units (AMX
or AVX512_BF16); on AVX2-only CPUs torch emulates it. The last lines give the machine's bf16/fp32
ratio (tokens per CPU second, per setting) beside what ``dtype: auto`` measures and picks
(glu_ray/models/precision.py). To see an AVX2-only CPU on a machine with bf16 units, mask them:
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python bench/cpu_speed.py ...``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "TRANSFORMERS_VERBOSITY": "error"}.items():
    os.environ.setdefault(_k, _v)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("GLU_RAY_SHARED", ROOT.parent / "shared"))
WIKITEXT = SHARED / "assets/text/wikitext2_raw_test.txt"


def cpu_features() -> str:
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx_vnni")
    return ", ".join(f for f in wanted if f in flags) or "no AVX2"


def cpu_model() -> str:
    try:
        return next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def auto_choice(model_dir: str) -> str:
    """What ``dtype: auto`` picks here for this model (one thread, as a trial), measured now."""
    import torch
    from transformers import AutoConfig

    from glu_ray.models.precision import bf16_speedup, choose_dtype

    torch.set_num_threads(1)
    cfg = AutoConfig.from_pretrained(model_dir)
    ratio = bf16_speedup(cfg.hidden_size, cfg.intermediate_size)
    choice = choose_dtype("auto", "cpu", cfg.hidden_size, cfg.intermediate_size, measure=lambda h, i: ratio)
    return f"dtype auto: {choice.dtype} ({choice.reason}, MLP matmul {cfg.hidden_size}x{cfg.intermediate_size})"


def measure(model_dir: str, dtype: str, threads: int, batch: int, docs: int, max_length: int,
            generate: int) -> dict:
    """One setting in this process: load, score once to warm up, then time a second pass."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from glu_ray.evaluation.perplexity import fast_perplexity, load_documents

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    pages = load_documents(str(WIKITEXT))[:docs]
    fast_perplexity(model, tok, [pages[0][:1500]], max_length=max_length, batch_size=batch)  # warm-up: kernels, allocator
    cpu = time.process_time()
    r = fast_perplexity(model, tok, pages, max_length=max_length, batch_size=batch)
    out = {"tokens": r.tokens, "seconds": r.seconds, "cpu_seconds": time.process_time() - cpu,
           "ppl": r.word_perplexity, "gen_tps": float("nan")}
    if generate:
        ids = tok(pages[0][:2000], return_tensors="pt").input_ids[:, :128]
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
            t = time.perf_counter()
            model.generate(ids, max_new_tokens=generate, min_new_tokens=generate, do_sample=False)
        out["gen_tps"] = generate / (time.perf_counter() - t)
    return out


def _worker(args, queue) -> None:
    queue.put(measure(*args))


def parallel(n: int, args: tuple) -> dict:
    """n one-thread processes at once (as n packed trials): summed tokens/s, slowest wall."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(args, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return {"tokens": sum(r["tokens"] for r in results), "seconds": max(r["seconds"] for r in results),
            "cpu_seconds": sum(r["cpu_seconds"] for r in results),
            "ppl": results[0]["ppl"], "gen_tps": sum(r["gen_tps"] for r in results),
            "tps": sum(r["tokens"] / r["seconds"] for r in results)}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(SHARED / "assets/models/stories260K"))
    p.add_argument("--docs", type=int, default=2, help="first N WikiText-2 test pages")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--batches", type=_ints, default=[1, 8])
    p.add_argument("--threads", type=_ints, default=[1, 2])
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--parallel", type=int, default=2, help="also N one-thread processes at once (0: skip)")
    p.add_argument("--generate", type=int, default=0, help="also time greedy decoding of this many tokens")
    args = p.parse_args(argv)

    import torch

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    print(f"model {Path(args.model).name}; CPU: {cpu_model()}, {os.cpu_count()} cores, {cpu_features()}"
          f"{f' (masked: ONEDNN_MAX_CPU_ISA={isa})' if isa else ''}; torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}); "
          f"{args.docs} WikiText-2 pages, max_length {args.max_length}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'dtype':<9}{'threads':>8}{'procs':>6}{'batch':>6}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}"
          f"{'tok/cpu-s':>10}{'word ppl':>14}{'gen tok/s':>10}{'load':>6}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    settings = [(d, t, 1, b) for d in dtypes for t in args.threads for b in args.batches]
    if args.parallel > 1:
        settings += [(d, 1, args.parallel, max(args.batches)) for d in dtypes]
    per_cpu_s = {}
    for dtype, threads, procs, batch in settings:
        job = (args.model, dtype, threads, batch, args.docs, args.max_length, args.generate)
        r = measure(*job) if procs == 1 else parallel(procs, job)
        per_cpu_s[dtype, threads, procs, batch] = r["tokens"] / r["cpu_seconds"]
        tps = r.get("tps", r["tokens"] / r["seconds"])
        print(f"{dtype:<9}{threads:>8}{procs:>6}{batch:>6}{r['tokens']:>8}{r['seconds']:>9.2f}{tps:>10.0f}"
              f"{r['tokens'] / r['cpu_seconds']:>10.0f}{r['ppl']:>14.6g}{r['gen_tps']:>10.1f}"
              f"{os.getloadavg()[0]:>6.1f}", flush=True)
    for (dtype, threads, procs, batch), rate in per_cpu_s.items():
        if dtype == "bfloat16" and ("float32", threads, procs, batch) in per_cpu_s:
            print(f"bf16/fp32 tokens per CPU second, {threads} thread(s) x {procs} process(es), batch {batch}: "
                  f"{rate / per_cpu_s['float32', threads, procs, batch]:.3g}")
    print(auto_choice(args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
