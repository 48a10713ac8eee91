"""glu-ray eval: run a benchmark suite with lm-evaluation-harness on a (pruned) model folder."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from glu_ray.errors import GluRayError
from glu_ray.evaluation.suites import SUITES, load_suite


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate a model on a benchmark suite with lm-eval")
    p.add_argument("--model", required=True, help="local model folder, hub id, or a fetched alias (glu-ray fetch)")
    p.add_argument("--suite", default="base", help=f"{', '.join(SUITES)} or a suite .yaml file (default base)")
    p.add_argument("--tasks", help="comma-separated subset: benchmark names of the suite, or tasks of --tasks-dir")
    p.add_argument("--tasks-dir", help="your own lm-eval task folder (include path)")
    p.add_argument("--stage", choices=("cheap", "full"), help="only the suite's benchmarks of this stage")
    p.add_argument("--limit", type=_limit, help="items per task: an integer, or a fraction < 1")
    p.add_argument("--batch-size", default=8, type=_batch_size, help="HFLM batch size (an integer or 'auto')")
    p.add_argument("--max-length", type=_positive_int, help="fixed context length (default: the suite's, capped by the model)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    p.add_argument("--out", required=True, help="results JSON to write")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _limit(text: str) -> int | float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("--limit must be positive")
    return int(value) if value >= 1 and value.is_integer() else value


def run(args: argparse.Namespace) -> int:
    from glu_ray.evaluation.harness import check_tasks, format_table, run_suite
    from glu_ray.models.loading import load_model

    # Suite, task names and task folder are all checked before any weight is read.
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    suite = load_suite(args.suite, tasks=tasks, tasks_dir=args.tasks_dir)
    benchmarks = suite.stage(args.stage) if args.stage else suite.benchmarks
    if not benchmarks:
        raise GluRayError(f"suite {suite.name!r} has no {args.stage} benchmarks among those selected")
    check_tasks(suite, benchmarks)
    out = Path(args.out)
    if not out.parent.exists():
        raise GluRayError(f"--out folder {out.parent} does not exist")
    batch = args.batch_size

    model, tok = load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code)
    result = run_suite(model, tok, suite, stage=args.stage, limit=args.limit, batch_size=batch,
                       max_length=args.max_length, seed=args.seed)
    out.write_text(json.dumps({
        "model": args.model, "suite": suite.name, "stage": args.stage, "limit": args.limit,
        "seconds": result.seconds, "metrics": result.metrics,
        "benchmarks": [asdict(b) for b in benchmarks], "lm_eval": result.raw,
    }, indent=2))
    print(format_table(result, suite))
    print(f"{len(benchmarks)} benchmarks in {result.seconds:.1f}s; wrote {out}")
    return 0
