"""Where FLAP's bias compensation helps and where it hurts, layer by layer, on real weights.

    python bench/bias_compensation_layers.py                        # SmolLM2-135M-Instruct, MAW, 10%
    python bench/bias_compensation_layers.py --metric act --pct 30

One calibration pass and one ranking of the unpruned model, as bench/data_metrics_ppl.py does.
Per layer it prints the norm of the compensating bias ``W_down[:, pruned] @ mean(x_pruned)``, the
median norm of the residual stream after that layer (on calibration tokens), and how many of the
layer's ``--top`` most active neurons (activation L2 norm) the metric prunes. Then it prunes fresh
copies with the bias added in chosen layer groups only (``--groups``; the others get none) and
scores the WikiText-2 word perplexity of each, so a harmful layer group shows by itself.
Calibration text comes after the evaluated articles, as in data_metrics_ppl.py.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import torch

from glu_ray.evaluation.perplexity import fast_perplexity, load_documents
from glu_ray.models.loading import glu_layers, load_model
from glu_ray.pruning.calibration import CalibrationSpec, calibrate, calibration_tokens
from glu_ray.pruning.prune import Ranking, prune, rank
from glu_ray.pruning.widths import TargetWidth, resolve_width

from data_metrics_ppl import WIKITEXT  # bench/ is on sys.path when run as a script


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2", help="model folder, hub id or fetched alias (default smollm2)")
    p.add_argument("--text", default=str(WIKITEXT), help="WikiText-2 raw test file")
    p.add_argument("--metric", default="maw")
    p.add_argument("--pct", type=float, default=10.0)
    p.add_argument("--eval-pages", type=int, default=2, help="first articles scored (whole)")
    p.add_argument("--calib-seqs", type=int, default=128)
    p.add_argument("--calib-len", type=int, default=128)
    p.add_argument("--top", type=int, default=16, help="a layer's most active neurons, counted when pruned")
    p.add_argument("--groups", default="0-2,3-,0-14,15-",
                   help="layer groups (a-b, a-: to the last) that get the bias, one evaluation each")
    return p.parse_args(argv)


def layer_group(text: str, n_layers: int) -> range:
    lo, _, hi = text.partition("-")
    return range(int(lo), int(hi) + 1 if hi else n_layers)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    docs = load_documents(args.text)[: args.eval_pages]
    spec = CalibrationSpec(args.text, args.calib_seqs, args.calib_len, 0, skip_docs=args.eval_pages)
    model, tok = load_model(args.model, device="cpu", dtype=torch.float32)
    cfg = model.config
    n = cfg.num_hidden_layers
    groups = {g: layer_group(g, n) for g in args.groups.split(",")}  # bad input fails before the passes
    stats = calibrate(model, tok, spec, batch_size=8)
    ranking = rank(model, args.metric, seed=0, calibration=stats)
    width = resolve_width(TargetWidth(pruning_pct=args.pct), cfg.intermediate_size, cfg.hidden_size)
    print(f"{args.model}: {args.metric} at {args.pct:g}% (width {width.width}); calibration {stats.tokens:,} tokens, "
          f"eval {len(docs)} pages")
    residual = residual_norms(model, calibration_tokens(spec, tok)[:32])
    print(f"layer  |bias|  median |residual|  pruned of top {args.top} by activation")
    for i, t in enumerate(glu_layers(model)):
        pruned = torch.ones(t.width, dtype=torch.bool)
        pruned[ranking.keep(i, width.width)] = False
        bias = (t.down.weight.double()[:, pruned] @ ranking.means[i][pruned]).norm().item()
        top = stats.layers[i].l2.topk(args.top).indices
        print(f"{i:5d} {bias:7.2f} {residual[i]:18.2f} {int(pruned[top].sum()):6d}")

    def ppl(layers: range | None) -> float:
        m = copy.deepcopy(model)
        prune(m, ranking if layers is None else only_in(ranking, layers), width, bias_compensation=layers is not None)
        return fast_perplexity(m, tok, docs, max_length=1024, batch_size=1).word_perplexity

    print(f"\nword perplexity, unpruned {fast_perplexity(model, tok, docs, max_length=1024, batch_size=1).word_perplexity:.2f}")
    for name, layers in {"no bias": None, f"all (0-{n - 1})": range(n), **groups}.items():
        print(f"  bias in {name:12s} {ppl(layers):10.2f}", flush=True)
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


def only_in(ranking: Ranking, layers: range) -> Ranking:
    """The same ranking whose means are zero outside ``layers``: a zero mean adds a zero bias."""
    return dataclasses.replace(ranking, means=tuple(m if i in layers else torch.zeros_like(m)
                                                    for i, m in enumerate(ranking.means)))


@torch.no_grad()
def residual_norms(model, tokens: torch.Tensor) -> list[float]:
    """Median per-token L2 norm of the residual stream after each decoder layer: [n_layers]."""
    norms: list[float] = []

    def record(module, inputs, output) -> None:
        h = output[0] if isinstance(output, tuple) else output  # [B, S, H]
        norms.append(h.norm(dim=-1).median().item())

    # Hooks on the decoder layers (the modules that own each MLP): HF's hidden_states tuple swaps the
    # last layer's output for the final norm's.
    mlps = {id(t.mlp) for t in glu_layers(model)}
    layers = [m for m in model.modules() if id(getattr(m, "mlp", None)) in mlps]
    handles = [layer.register_forward_hook(record) for layer in layers]
    try:
        model(input_ids=tokens, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return norms

if __name__ == "__main__":
    sys.exit(main())
