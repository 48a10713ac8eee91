"""glu-ray eval: run a benchmark suite with lm-evaluation-harness on a (pruned) model folder."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from lm_eval.utils import simple_parse_args_string

from glu_ray.errors import GluRayError
from glu_ray.evaluation.harness import format_table, run_suite
from glu_ray.evaluation.meter import Meter
from glu_ray.evaluation.preflight import check_hub_inputs, check_suite_inputs
from glu_ray.evaluation.suites import SUITES, load_suite, with_fewshot
from glu_ray.models.loading import check_glu_config, load_model, resolve_dtype
from glu_ray.models.precision import AUTO, check_dtype


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate a model on a benchmark suite with lm-eval")
    p.add_argument("--model", required=True, help="local model folder, hub id, or a fetched alias (glu-ray fetch)")
    p.add_argument("--suite", default="base", help=f"{', '.join(SUITES)} or a suite .yaml file (default base)")
    p.add_argument("--tasks", help="comma-separated subset: benchmark names of the suite, or tasks, groups and "
                                   "tags of --tasks-dir")
    p.add_argument("--tasks-dir", help="your own lm-eval task folder (include path); without --tasks, its own "
                                       "tasks and groups are run")
    p.add_argument("--num_fewshot", "--num-fewshot", type=_fewshot, metavar="K|NAME=K,...",
                   help="few-shot count for every benchmark (as lm-eval's), or per benchmark: mmlu=5,tiny_mc=0; "
                        "a name given twice (tiny_mc=0,tiny_mc=2) is evaluated at each count")
    p.add_argument("--gen_kwargs", "--gen-kwargs", type=_gen_kwargs, metavar="KEY=VALUE,...",
                   help="generation settings for generating tasks, as lm-eval's: max_gen_toks=64,temperature=0")
    p.add_argument("--stage", choices=("cheap", "full"), help="only the suite's benchmarks of this stage")
    p.add_argument("--limit", type=_limit, help="items per task: an integer, or a fraction < 1")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", default=8, type=_batch_size, help="HFLM batch size (an integer or 'auto')")
    p.add_argument("--max-length", type=_positive_int, help="fixed context length (default: the suite's, capped by the model)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--dtype", default=AUTO, help="dtype the model computes in: auto (default: bf16 on CUDA where "
                   "supported; on a CPU the faster of bf16 and fp32, measured once per machine), float32, bfloat16")
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


def _fewshot(text: str) -> int | dict[str, tuple[int, ...]]:
    """``5`` -> 5; ``mmlu=5,tiny_mc=0,tiny_mc=2`` -> {"mmlu": (5,), "tiny_mc": (0, 2)}."""
    def count(value: str) -> int:
        if not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"few-shot counts are non-negative integers, got {value!r} in {text!r}")
        return int(value)

    if "=" not in text:
        return count(text)
    out: dict[str, tuple[int, ...]] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=K items, got {item!r} in {text!r}")
        out[name.strip()] = (*out.get(name.strip(), ()), count(value))
    return out


def _gen_kwargs(text: str) -> dict:
    items = [i for i in text.split(",") if i.strip()]
    bad = [i for i in items if "=" not in i or not i.split("=", 1)[0].strip()]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE,... (as lm-eval's --gen_kwargs), got {text!r}")
    return simple_parse_args_string(text)


def _limit(text: str) -> int | float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("--limit must be positive")
    return int(value) if value >= 1 and value.is_integer() else value


def run(args: argparse.Namespace) -> int:
    # Suite, task names and task folder are all checked before any weight is read.
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    suite = with_fewshot(load_suite(args.suite, tasks=tasks, tasks_dir=args.tasks_dir), args.num_fewshot)
    if args.tasks_dir and tasks is None:
        print(f"--tasks-dir {args.tasks_dir} without --tasks: running the folder's own tasks and groups")
    benchmarks = suite.stage(args.stage) if args.stage else suite.benchmarks
    if not benchmarks:
        raise GluRayError(f"suite {suite.name!r} has no {args.stage} benchmarks among those selected")
    check_suite_inputs(suite, benchmarks)
    check_dtype(args.dtype)
    check_hub_inputs([(args.model, None)], [(suite, benchmarks)])  # online: the model and every dataset, one pass
    out = Path(args.out)
    if not out.parent.exists():
        raise GluRayError(f"--out folder {out.parent} does not exist")
    batch = args.batch_size
    print("evaluating " + ", ".join(f"{b.name} ({b.task}, {b.num_fewshot}-shot)" for b in benchmarks))

    config = check_glu_config(args.model, trust_remote_code=args.trust_remote_code)  # read once, for both below
    choice = resolve_dtype(config, args.dtype, device=args.device)
    print(f"dtype {choice.dtype} ({choice.reason})")
    model, tok = load_model(args.model, device=args.device, dtype=choice.torch_dtype, config=config,
                            trust_remote_code=args.trust_remote_code)
    result = run_suite(model, tok, suite, stage=args.stage, limit=args.limit, batch_size=batch,
                       max_length=args.max_length, seed=args.seed, gen_kwargs=args.gen_kwargs,
                       meter=Meter(lambda line: print(line, flush=True)))
    out.write_text(json.dumps({
        "model": args.model, "suite": suite.name, "stage": args.stage, "limit": args.limit,
        "gen_kwargs": args.gen_kwargs, "dtype": choice.to_dict(),
        "seconds": result.seconds, "metrics": result.metrics,
        "benchmarks": [asdict(b) for b in benchmarks], "lm_eval": result.raw,
    }, indent=2))
    print(format_table(result, suite))
    print(f"{len(benchmarks)} benchmarks in {result.seconds:.1f}s; wrote {out}")
    return 0
