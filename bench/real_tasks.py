"""Seconds and score of each task of a suite on one model, through a hub: what a trial's stages cost on this machine.

    HF_ENDPOINT=... python bench/real_tasks.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--suite instruct]
        [--limit 10] [--batch-size 8] [--dtype bfloat16] [--gen-kwargs max_gen_toks=256]
        [--tasks arc_challenge,ifeval] [--out times.json]

Model and every task's data come from the hub in use (HF_ENDPOINT: huggingface.co, or the local hub
of tools/hub_mirror that `make mirror` starts). The model loads once on CPU; then each benchmark runs alone through glu-ray's own
``run_suite`` (lm-eval's simple_evaluate: the same path as `glu-ray eval` and a sweep trial), so
each row's seconds are that task's, including lm-eval's task set-up. Wall seconds on a shared
machine include waiting for a CPU, so the process's CPU seconds (all threads) stand beside them.
Prints one row per task and the total; ``--out`` keeps the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="model folder or hub id")
    p.add_argument("--suite", default="instruct")
    p.add_argument("--limit", type=int, default=10, help="items per task (MMLU: per subject)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--gen-kwargs", help="lm-eval's --gen_kwargs for generating tasks, e.g. max_gen_toks=256")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tasks", help="comma-separated subset of the suite's benchmarks")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args(argv)

    import torch

    from lm_eval.utils import simple_parse_args_string

    from glu_ray.evaluation.harness import run_suite
    from glu_ray.evaluation.preflight import check_suite_inputs
    from glu_ray.evaluation.suites import load_suite
    from glu_ray.models.loading import load_model

    suite = load_suite(args.suite, tasks=args.tasks.split(",") if args.tasks else None)
    check_suite_inputs(suite)
    gen_kwargs = simple_parse_args_string(args.gen_kwargs) if args.gen_kwargs else None
    started = time.perf_counter()
    model, tok = load_model(args.model, device="cpu", dtype=getattr(torch, args.dtype))
    print(f"model {args.model} ({args.dtype}) loaded in {time.perf_counter() - started:.1f}s; suite {suite.name}, "
          f"limit {args.limit}, batch {args.batch_size}, gen_kwargs {gen_kwargs or suite.max_gen_toks}, "
          f"torch threads {torch.get_num_threads()}, hub {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}")
    rows = []
    print(f"{'task':<16}{'shots':>6}{'items':>6}{'metric':>40}{'value':>9}{'wall s':>9}{'CPU s':>9}")
    for bench in suite.benchmarks:
        cpu = time.process_time()
        result = run_suite(model, tok, replace(suite, benchmarks=(bench,)), limit=args.limit, batch_size=args.batch_size,
                           gen_kwargs=gen_kwargs)
        items = sum(n["effective"] for n in result.raw["n-samples"].values())
        cpu = time.process_time() - cpu
        value = result.metrics[bench.key]
        rows.append({"task": bench.name, "num_fewshot": bench.num_fewshot, "metric": bench.key, "value": value, "items": items,
                     "seconds": round(result.seconds, 1), "cpu_seconds": round(cpu, 1)})
        print(f"{bench.name:<16}{bench.num_fewshot:>6}{items:>6}{bench.key:>40}{value:>9.4f}{result.seconds:>9.1f}{cpu:>9.1f}",
              flush=True)
    total = sum(r["seconds"] for r in rows)
    total_cpu = sum(r["cpu_seconds"] for r in rows)
    print(f"{'total':<16}{'':>6}{'':>6}{'':>40}{'':>9}{total:>9.1f}{total_cpu:>9.1f}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"model": args.model, "suite": suite.name, "limit": args.limit, "batch_size": args.batch_size,
                       "dtype": args.dtype, "gen_kwargs": gen_kwargs, "rows": rows, "total_seconds": total,
                       "total_cpu_seconds": total_cpu}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
