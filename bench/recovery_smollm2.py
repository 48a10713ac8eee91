"""Healing on a real model: SmolLM2-135M-Instruct at 30% MAW, KD from the unpruned model.

Measures the KD step time first (the budget is sized from it), then WikiText-2 word perplexity
of the baseline, the pruned model and the healed model on the same pages, the recovered share of
the lost cross-entropy, and the healing's cost (seconds, tokens, peak memory).

    python bench/recovery_smollm2.py --steps 12 --batch-size 2 --seq-len 256 --pages 2 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import torch

from glu_ray import TargetWidth, fast_perplexity, load_documents, load_model, prune, rank, resolve_width
from glu_ray.models.fetch import resolve_model_source
from glu_ray.pruning.calibration import CalibrationSpec
from glu_ray.recovery import RecoverySpec, heal, healing_tokens

SHARED = "../shared/assets/text"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--pct", type=float, default=30.0)
    p.add_argument("--method", default="kd")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float)
    p.add_argument("--heal-text", default=f"{SHARED}/tinystories_valid_head.txt")
    p.add_argument("--eval-text", default=f"{SHARED}/wikitext2_raw_test.txt")
    p.add_argument("--pages", type=int, default=2, help="WikiText-2 test pages scored (the first N)")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    teacher, tok = load_model(resolve_model_source(a.model))
    student = copy.deepcopy(teacher)
    cfg = student.config
    prune(student, rank(student, "maw"), resolve_width(TargetWidth(pruning_pct=a.pct), cfg.intermediate_size, cfg.hidden_size))
    docs = load_documents(a.eval_text)[: a.pages]

    def ppl(model) -> float:
        return fast_perplexity(model, tok, docs, max_length=a.max_length, batch_size=4).word_perplexity

    t0 = time.perf_counter()
    base, before = ppl(teacher), ppl(student)
    eval_s = (time.perf_counter() - t0) / 2
    spec = RecoverySpec(method=a.method, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                        data=CalibrationSpec(a.heal_text, seq_len=a.seq_len))
    healed, result = heal(student, teacher, healing_tokens(spec, tok), spec)
    after = ppl(healed)
    share = (math.log(before) - math.log(after)) / (math.log(before) - math.log(base))
    out = {"model": a.model, "pct": a.pct, "method": a.method, "pages": a.pages, "threads": a.threads,
           "ppl_baseline": base, "ppl_pruned": before, "ppl_healed": after, "recovered_share_log_ppl": share,
           "eval_seconds_per_model": eval_s, **result.to_dict()}
    print(f"{a.model} {a.pct:g}% maw, {a.method}: {result.steps} steps x {a.batch_size} x {a.seq_len} = {result.tokens:,} "
          f"tokens in {result.seconds:.0f} s ({result.step_seconds:.1f} s/step, {result.tokens / result.seconds:.0f} tok/s), "
          f"peak {result.peak_memory_mb:.0f} MB; loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    print(f"WikiText-2 word ppl ({a.pages} pages): baseline {base:.2f}, pruned {before:.2f}, healed {after:.2f}; "
          f"recovered share of the lost log-ppl {share:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
