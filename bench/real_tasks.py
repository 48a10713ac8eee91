"""Seconds and score of each real task (suite `real_instruct`) on one model: what a trial's stages cost on this machine.

    python bench/real_tasks.py [--model smollm2] [--suite real_instruct] [--limit 20] [--batch-size 8]
                               [--tasks arc_challenge,ifeval] [--out times.json]

The model loads once (fp32 on CPU); then each benchmark runs alone through glu-ray's own
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

for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2", help="model folder, hub id or fetched alias")
    p.add_argument("--suite", default="real_instruct")
    p.add_argument("--limit", type=int, default=20, help="items per task (MMLU: per subject)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tasks", help="comma-separated subset of the suite's benchmarks")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args(argv)

    import torch

    from glu_ray.evaluation.harness import check_data, check_tasks, run_suite
    from glu_ray.evaluation.suites import load_suite
    from glu_ray.models.loading import load_model

    suite = load_suite(args.suite, tasks=args.tasks.split(",") if args.tasks else None)
    check_tasks(suite)
    check_data(suite)
    started = time.perf_counter()
    model, tok = load_model(args.model, device="cpu")
    print(f"model {args.model} loaded in {time.perf_counter() - started:.1f}s; suite {suite.name}, limit {args.limit}, "
          f"batch {args.batch_size}, max_gen_toks {suite.max_gen_toks}, torch threads {torch.get_num_threads()}")
    rows = []
    print(f"{'task':<16}{'shots':>6}{'metric':>40}{'value':>9}{'wall s':>9}{'CPU s':>9}")
    for bench in suite.benchmarks:
        cpu = time.process_time()
        result = run_suite(model, tok, replace(suite, benchmarks=(bench,)), limit=args.limit, batch_size=args.batch_size)
        cpu = time.process_time() - cpu
        value = result.metrics[bench.key]
        rows.append({"task": bench.name, "num_fewshot": bench.num_fewshot, "metric": bench.key, "value": value,
                     "seconds": round(result.seconds, 1), "cpu_seconds": round(cpu, 1)})
        print(f"{bench.name:<16}{bench.num_fewshot:>6}{bench.key:>40}{value:>9.4f}{result.seconds:>9.1f}{cpu:>9.1f}",
              flush=True)
    total = sum(r["seconds"] for r in rows)
    total_cpu = sum(r["cpu_seconds"] for r in rows)
    print(f"{'total':<16}{'':>6}{'':>40}{'':>9}{total:>9.1f}{total_cpu:>9.1f}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"model": args.model, "suite": suite.name, "limit": args.limit, "batch_size": args.batch_size,
                       "max_gen_toks": suite.max_gen_toks, "rows": rows, "total_seconds": total,
                       "total_cpu_seconds": total_cpu}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
