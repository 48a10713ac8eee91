"""Pruning speed: glu-ray (rank once, prune many) vs OptiPFair 0.4.2 (one prune_model per ratio).

A Llama-3.2-1B-shaped random model (hidden 2048, intermediate 8192, 16 layers, bf16) on CPU,
pruned to 10..60% with maw, vow and pon. Every prune starts from a fresh copy of the MLP weights;
making that copy is timed apart and excluded from both sides alike. The floor is reading the MLP
weights once at this machine's copy bandwidth (a copy into ready buffers), measured in the same run.

One torch thread by default, as in a Ray trial. Both sides are timed by the wall clock and by this process's CPU time: on a shared machine other
processes inflate wall seconds at random, CPU seconds much less.

    python bench/prune_speed.py            # the issue's configuration
    python bench/prune_speed.py --quick    # 2 layers, for a smoke run
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

PARTS = ("gate_proj", "up_proj", "down_proj")
RATIOS = (10, 20, 30, 40, 50, 60)
CLOCKS = ("wall", "cpu")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=1024, help="small on purpose: only the MLPs are pruned")
    p.add_argument("--metrics", default="maw,vow,pon")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for both sides and the floor (default 1: what a Ray trial gets, "
                        "OMP_NUM_THREADS=1; on a shared machine extra OpenMP threads mostly wait)")
    p.add_argument("--quick", action="store_true", help="2 layers unless --layers is given")
    p.add_argument("--thp", action="store_true",
                   help="THP_MEM_ALLOC_ENABLE=1: torch backs large tensors with huge pages, which makes "
                        "fresh allocations (both sides make them) several times cheaper where the kernel "
                        "allows madvise; off by default")
    args = p.parse_args(argv)
    if args.quick and args.layers == 16:
        args.layers = 2
    return args


class Timer:
    """Wall and process-CPU seconds of a block: ``with Timer() as t: ...; t.wall, t.cpu``."""

    def __enter__(self) -> "Timer":
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self._w, time.process_time() - self._c


def build_model(args: argparse.Namespace):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    # bf16 from the start: a 1B fp32 model would be built, then halved, for nothing.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        return LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)


def mlp_weights(model) -> list[dict]:
    """Per layer, the MLP weights as they are now: {part: [out, in] bf16}."""
    from glu_ray.models.loading import glu_layers

    return [{part: getattr(t.mlp, part).weight.detach() for part in PARTS} for t in glu_layers(model)]


def restore(model, pristine: list[dict], intermediate: int) -> float:
    """Give ``model`` fresh nn.Linear MLPs holding copies of ``pristine``; returns seconds (excluded)."""
    from torch import nn

    from glu_ray.models.loading import glu_layers

    start = time.perf_counter()
    for t, weights in zip(glu_layers(model), pristine):
        for part, w in weights.items():
            lin = nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[0], bias=False, dtype=w.dtype)
            lin.weight = nn.Parameter(w.clone(), requires_grad=False)
            setattr(t.mlp, part, lin)
    model.config.intermediate_size = intermediate
    return time.perf_counter() - start


def copy_floor(pristine: list[dict], repeats: int = 3) -> dict:
    """Best-of {wall, cpu} seconds to read every MLP weight once by copying it into ready buffers."""
    import torch

    dst = [{k: torch.empty_like(w) for k, w in layer.items()} for layer in pristine]
    best = dict.fromkeys(CLOCKS, float("inf"))
    for _ in range(repeats + 1):  # the first pass only faults the buffers in
        with Timer() as t:
            for src_layer, dst_layer in zip(pristine, dst):
                for k, w in src_layer.items():
                    dst_layer[k].copy_(w)
        if _ > 0:
            best = {c: min(best[c], getattr(t, c)) for c in CLOCKS}
    return best


def compare_metric(model, pristine, metric: str, intermediate: int, hidden: int) -> dict:
    """glu-ray ranks once; then, ratio by ratio, glu-ray and OptiPFair each prune a fresh copy.

    Interleaving the two sides ratio by ratio puts them under the same machine load, and checking
    each pair at once keeps only one ratio's pruned weights in memory. Returns, per clock,
    {"floor", "rank", "prunes", "optipfair"} seconds and whether every pair kept the same weights.
    """
    from optipfair import prune_model

    from glu_ray import TargetWidth, prune, rank, resolve_width

    out = {c: {"floor": s} for c, s in copy_floor(pristine).items()}  # next to this ranking: same load
    restore(model, pristine, intermediate)
    with Timer() as t:
        ranking = rank(model, metric)
    _add(out, "rank", t)
    same = True
    for pct in RATIOS:
        restore(model, pristine, intermediate)
        width = resolve_width(TargetWidth(pruning_pct=pct), intermediate, hidden)
        with Timer() as t:
            prune(model, ranking, width)
        _add(out, "prunes", t)
        ours = mlp_weights(model)
        restore(model, pristine, intermediate)
        with Timer() as t:
            prune_model(model, pruning_type="MLP_GLU", neuron_selection_method=metric.upper(),
                        pruning_percentage=pct, show_progress=False)
        _add(out, "optipfair", t)
        same = same and same_weights(ours, mlp_weights(model))
        del ours
    out["same"] = same
    return out


def _add(out: dict, key: str, t: Timer) -> None:
    for c in CLOCKS:
        out[c][key] = out[c].get(key, 0.0) + getattr(t, c)


def same_weights(a: list[dict], b: list[dict]) -> bool:
    import torch

    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in PARTS)


def print_table(rows: list[tuple[str, dict]], clock: str) -> None:
    print(f"\n{clock} seconds")
    print(f"{'metric':<7}{'floor':>8}{'glu-ray rank':>13}{'+6 prunes':>11}{'= total':>9}{'optipfair':>11}"
          f"{'speed-up':>10}{'rank/floor':>12}  same")
    total = {k: sum(r[clock][k] for _, r in rows) for k in ("floor", "rank", "prunes", "optipfair")}
    for name, r, same in [(n, r[clock], r["same"]) for n, r in rows] + [("all", total, all(r["same"] for _, r in rows))]:
        ours = r["rank"] + r["prunes"]
        print(f"{name:<7}{r['floor']:>7.3f}s{r['rank']:>12.3f}s{r['prunes']:>10.3f}s{ours:>8.3f}s"
              f"{r['optipfair']:>10.3f}s{r['optipfair'] / ours:>9.1f}x{r['rank'] / r['floor']:>11.2f}x"
              f"  {'yes' if same else 'NO'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.thp:
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"  # read by torch's CPU allocator: set before import
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("optipfair").setLevel(logging.WARNING)  # it logs every call at INFO
    with Timer() as t:
        model = build_model(args)
    pristine = [{k: w.clone() for k, w in layer.items()} for layer in mlp_weights(model)]
    nbytes = sum(w.numel() * w.element_size() for layer in pristine for w in layer.values())
    print(f"model: {args.layers} layers, hidden {args.hidden}, intermediate {args.intermediate}, bf16, "
          f"MLP weights {nbytes / 1e9:.2f} GB; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"huge pages {'on' if args.thp else 'off'}; built in {t.wall:.1f}s")
    floor = copy_floor(pristine)
    print(f"floor: read MLP weights once = {floor['wall']:.3f}s (copy bandwidth {nbytes / floor['wall'] / 1e9:.1f} "
          f"GB/s), re-measured before each metric; a fresh copy per prune takes "
          f"{restore(model, pristine, args.intermediate):.3f}s, excluded from both sides")
    print(f"ratios: {', '.join(f'{p}%' for p in RATIOS)}; 'same': both sides kept bit-identical weights")
    rows = []
    for metric in args.metrics.split(","):
        rows.append((metric, compare_metric(model, pristine, metric, args.intermediate, args.hidden)))
        r = rows[-1][1]["wall"]
        print(f"  {metric}: rank {r['rank']:.3f}s + prunes {r['prunes']:.3f}s vs optipfair {r['optipfair']:.3f}s",
              flush=True)
    for clock in CLOCKS:
        print_table(rows, clock)
    print("\ntargets: speed-up >= 5x over the 6 ratios; glu-ray rank within 3x of the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
