"""What an unaligned MLP width costs: the aligned width (a multiple of ``--divisor``, as widths.py
rounds) against the width one neuron narrower, side by side in one run.

One neuron fewer changes the FLOPs by 1/width (under 0.1%), so any gap in tokens/s is alignment:
matrix kernels tile the MLP's inner dimension, and a width off the tile grid pays for a ragged
edge (width-pruned LLaMA-7B is reported slower than dense at batch 1 on an H100 when widths are
not multiples of 8). For each pruning level the model is ranked once and pruned to both widths;
the two copies are then timed in alternating order, round by round, so machine noise hits both
alike. Timing is glu_ray.efficiency.speed's forced-length generation (prefill and decode tokens/s),
by the wall clock and per second of this process's CPU time (steadier on a shared machine).

    python bench/width_alignment.py                               # SmolLM2-135M shape, CPU, fp32
    python bench/width_alignment.py --model ../shared/assets/models/stories260K --divisor 32
    python bench/width_alignment.py --shape 1b --device cuda      # Llama-3.2-1B shape, bf16, on a GPU
    python bench/width_alignment.py --model ~/.cache/glu-ray/models/SmolLM2-135M-Instruct --dtype bfloat16
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

for _k, _v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)

import torch  # noqa: E402

from glu_ray import TargetWidth, prune, rank, resolve_width  # noqa: E402
from glu_ray.efficiency.speed import Stat, forced_generate, random_prompts  # noqa: E402
from glu_ray.pruning.widths import DIVISORS  # noqa: E402

_LLAMA = dict(max_position_embeddings=2048, rope_theta=500000.0, tie_word_embeddings=True)
SHAPES = {  # sizes of the published configs; random init (speed does not depend on the weights)
    "smollm2-135m": dict(_LLAMA, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152),
    "1b": dict(_LLAMA, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
    "tiny": dict(_LLAMA, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    how = p.add_mutually_exclusive_group()
    how.add_argument("--model", help="a local Hugging Face model folder (sizes from its config)")
    how.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="auto: bf16 on CUDA, fp32 on CPU (bf16 is fast on CPUs with AMX/AVX512-BF16 only)")
    p.add_argument("--pcts", default="10,30,50", help="pruning levels; each gives one aligned/unaligned pair")
    p.add_argument("--divisor", type=int, default=64, choices=DIVISORS)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--gen-len", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5, help="timed runs of each width, alternating")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: what a Ray trial gets)")
    p.add_argument("--json", help="write the rows here")
    return p.parse_args(argv)


def base_model(a: argparse.Namespace):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    auto = torch.bfloat16 if a.device.startswith("cuda") else torch.float32
    dtype = auto if a.dtype == "auto" else getattr(torch, a.dtype)
    if a.model:
        return AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype).to(a.device).eval()
    torch.manual_seed(0)
    with torch.device(a.device):
        return LlamaForCausalLM._from_config(LlamaConfig(**SHAPES[a.shape]), dtype=dtype).eval()


def width_pair(pct: float, intermediate: int, hidden: int, divisor: int) -> tuple[int, int]:
    """(aligned, unaligned): the pruning level's width rounded to ``divisor``, and one neuron fewer."""
    aligned = resolve_width(TargetWidth(pruning_pct=pct, divisor=divisor), intermediate, hidden).width
    return aligned, aligned - 1


PARTS = ("prefill", "decode", "prefill_cpu", "decode_cpu")  # tokens/s by the wall clock, and per CPU second


def time_pair(models: dict[int, torch.nn.Module], batch: int, a: argparse.Namespace) -> dict[int, dict[str, Stat]]:
    """Both widths, alternating which goes first each round; one warm-up each."""
    ids = random_prompts(next(iter(models.values())), batch, a.prompt_len)
    for m in models.values():
        forced_generate(m, ids, 2)
    runs: dict[int, list] = {w: [] for w in models}
    order = list(models)
    for r in range(a.rounds):
        for w in order if r % 2 == 0 else order[::-1]:
            runs[w].append(forced_generate(models[w], ids, a.gen_len)[1])
    tokens = {"prefill": batch * a.prompt_len, "decode": batch * (a.gen_len - 1)}
    return {w: {part: Stat.of([tokens[part.removesuffix("_cpu")] / getattr(t, f"{part}_s") for t in ts])
                for part in PARTS} for w, ts in runs.items()}


def main(argv=None) -> list[dict]:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    base = base_model(a)
    cfg = base.config
    ranking = rank(base, "maw")
    name = a.model or a.shape
    print(f"{name} on {a.device} ({next(base.parameters()).dtype}), hidden {cfg.hidden_size}, intermediate "
          f"{cfg.intermediate_size}; divisor {a.divisor}; prompt {a.prompt_len}, {a.gen_len} generated tokens; "
          f"{a.rounds} alternating rounds; medians")
    heads = "".join(f" {p + ' al':>10} {'unal':>10} {'ratio':>6}" for p in PARTS)
    print(f"tokens/s: wall clock (prefill, decode) and per CPU second (*_cpu)\n{'pct':>4} {'aligned':>8} "
          f"{'unaligned':>9} {'batch':>5}{heads}")
    rows, start = [], time.perf_counter()
    for pct in (float(x) for x in a.pcts.split(",") if x.strip()):
        pair = width_pair(pct, cfg.intermediate_size, cfg.hidden_size, a.divisor)
        models = {}
        for w in pair:
            models[w] = copy.deepcopy(base)
            prune(models[w], ranking, resolve_width(TargetWidth(width=w), cfg.intermediate_size, cfg.hidden_size))
        for batch in (int(x) for x in a.batches.split(",")):
            res = time_pair(models, batch, a)
            al, un = (res[w] for w in pair)
            row = {"model": name, "device": a.device, "pruning_pct": pct, "divisor": a.divisor, "batch": batch,
                   "aligned": pair[0], "unaligned": pair[1]}
            for part in PARTS:
                row |= {f"{part}_tok_s_aligned": al[part].median, f"{part}_tok_s_unaligned": un[part].median,
                        f"{part}_spread_aligned": al[part].spread, f"{part}_spread_unaligned": un[part].spread,
                        f"{part}_ratio": al[part].median / un[part].median}
            rows.append(row)
            cells = "".join(f" {al[p].median:>10,.1f} {un[p].median:>10,.1f} {row[p + '_ratio']:>6.3f}" for p in PARTS)
            print(f"{pct:>4g} {pair[0]:>8} {pair[1]:>9} {batch:>5}{cells}")
        del models
    print(f"ratio = aligned / unaligned tokens/s (> 1: the aligned width is faster); {time.perf_counter() - start:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
