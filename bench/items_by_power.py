"""Items by power on a real model: the baseline's pilot, and the items each CPU budget buys.

Runs the pilot the sweep's --items-by-power runs (glu_ray/evaluation/pilot.py: each benchmark on
--pilot-items items, its accuracy and CPU-seconds per item), then prints the plan
(glu_ray/evaluation/power.py) for a drop at 2 stderrs under each budget: which tasks stay, how many
items each gets and the drop it can see. Runs no sweep.

    HF_ENDPOINT=$(cat .cache/hub-mirror/endpoint) NLTK_DATA=../shared/assets/nltk_data \\
        python bench/items_by_power.py --model smollm2 \\
        --suite instruct_mixed --pilot-items 20 --drop 0.05 --budgets 300,600,1200,2400 --json out.json

    python bench/items_by_power.py --ledger RUNS/EXPERIMENT/ledger.jsonl --budgets 330,600   # a sweep's own pilot
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import torch

from glu_ray.evaluation.pilot import pilot_costs
from glu_ray.evaluation.power import TaskCost, plan_items
from glu_ray.evaluation.suites import load_suite
from glu_ray.models.loading import load_model


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--suite", default="instruct_mixed")
    p.add_argument("--tasks", help="comma-separated subset of the suite")
    p.add_argument("--pilot-items", type=int, default=20)
    p.add_argument("--drop", type=float, default=0.05)
    p.add_argument("--budgets", default="300,600,1200,2400", help="CPU-seconds of one trial's evaluation")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--max-gen-toks", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a sweep trial's: 1)")
    p.add_argument("--dtype", help="float32 or bfloat16 (default: auto, as a sweep's trials)")
    p.add_argument("--ledger", help="plan from the pilot a sweep kept in this ledger (runs no model)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.ledger:
        costs, wall = _kept_pilot(args.ledger), 0.0
    else:
        costs, wall = _pilot(args)
    plans = {}
    for budget in [float(b) for b in args.budgets.split(",")] + [None]:
        plan = plan_items(costs, args.drop, budget_s=budget)
        plans[str(budget)] = plan.to_dict()
        print("\n" + plan.table())
    out = {"args": vars(args), "pilot_wall_s": wall, "pilot": [asdict(c) for c in costs], "plans": plans}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


def _kept_pilot(ledger: str) -> list[TaskCost]:
    from glu_ray.sweep.items import kept_pilots
    from glu_ray.trials.ledger import Ledger

    pilots = kept_pilots(Ledger(ledger))
    if not pilots:
        raise SystemExit(f"{ledger}: no pilot in this ledger (a sweep run with --items-by-power keeps one)")
    return list(list(pilots.values())[-1])


def _pilot(args) -> tuple[list[TaskCost], float]:
    torch.set_num_threads(args.threads)
    suite = load_suite(args.suite, tasks=args.tasks.split(",") if args.tasks else None)
    model, tok = load_model(args.model, device="cpu", dtype=args.dtype)
    started = time.perf_counter()
    costs = []
    for bench in suite.benchmarks:  # one at a time, each printed as it ends: a late failure keeps the rest
        (c,) = pilot_costs(model, tok, replace(suite, benchmarks=(bench,)), items=args.pilot_items,
                           batch_size=args.batch_size, max_length=args.max_length,
                           gen_kwargs={"max_gen_toks": args.max_gen_toks})
        costs.append(c)
        print(f"pilot {c.name:16s} score {c.score:.4g}  chance {c.chance}  {c.seconds_per_item:.3f} CPU-s/item  "
              f"split {c.max_items}  items/unit {c.items_per_unit}", flush=True)
    wall = time.perf_counter() - started
    print(f"pilot: {args.pilot_items} items per task, {wall:.0f} s wall, dtype {next(model.parameters()).dtype}")
    return costs, wall


if __name__ == "__main__":
    main()
