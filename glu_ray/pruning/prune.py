"""Rank once, prune many: score every GLU neuron once per (model, metric), then any width is a
prefix of that ranking, so a sweep never re-scores the same weights."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from glu_ray.errors import GluRayError
from glu_ray.pruning.importance import get_metric, score_layer
from glu_ray.models.loading import glu_layers, param_count
from glu_ray.pruning.widths import Width


@dataclass(frozen=True)
class Ranking:
    """Neuron ids of every layer, most important first: order[layer] is a permutation of range(I).

    ``scores`` keeps each layer's fp32 scores so that ``keep`` can cut exactly where OptiPFair's
    ``torch.topk`` cuts: bf16 weights give many exactly tied scores (maw of bf16 rows), and topk
    breaks ties its own way, not by index. Without ties the kept set is a prefix of ``order``.
    """

    metric: str
    seed: int
    order: tuple[torch.Tensor, ...]  # [n_layers] x [I] int64, on CPU
    seconds: float
    scores: tuple[torch.Tensor, ...] = ()  # [n_layers] x [I] fp32, on CPU; () = cut by order

    def keep(self, layer: int, width: int) -> torch.Tensor:
        """The ``width`` most important neurons of ``layer``, in their original order: [width]."""
        if self.scores:
            # O(I) per layer: re-cutting the stored scores costs nothing next to reading weights.
            return torch.sort(torch.topk(self.scores[layer], width).indices).values
        return torch.sort(self.order[layer][:width]).values

    def save(self, path: str | Path) -> None:
        torch.save(
            {"metric": self.metric, "seed": self.seed, "order": list(self.order), "seconds": self.seconds,
             "scores": list(self.scores)},
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> "Ranking":
        d = torch.load(path, weights_only=True)
        return cls(d["metric"], d["seed"], tuple(d["order"]), d["seconds"], tuple(d.get("scores", ())))


@dataclass(frozen=True)
class PruneReport:
    metric: str
    width: int
    expansion_ratio: float
    pruning_pct: float  # percentage of neurons actually removed
    layer_widths: tuple[int, ...]
    params_before: int
    params_after: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.metric}: width {self.width} ({self.expansion_ratio:.3f}x, {self.pruning_pct:.1f}% removed) "
            f"in {len(self.layer_widths)} layers; params {self.params_before:,} -> {self.params_after:,} "
            f"({100 * (1 - self.params_after / self.params_before):.1f}% fewer); {self.seconds:.2f}s"
        )


@torch.no_grad()
def rank(model: nn.Module, metric: str, *, seed: int = 0) -> Ranking:
    """Score every neuron of every GLU layer with ``metric`` and sort, most important first."""
    metric = get_metric(metric).name  # fail on an unknown name before touching weights; aliases resolved
    start = time.perf_counter()
    order, all_scores = [], []
    for t in glu_layers(model):
        # Distinct, reproducible stream per layer for seeded metrics (random).
        scores = score_layer(metric, t.gate.weight, t.up.weight, seed=seed * 1_000_003 + t.index).cpu()  # [I]
        all_scores.append(scores)
        order.append(torch.argsort(scores, descending=True, stable=True))
    return Ranking(metric, seed, tuple(order), time.perf_counter() - start, tuple(all_scores))


@torch.no_grad()
def prune(model: nn.Module, ranking: Ranking, width: Width) -> PruneReport:
    """Keep the top ``width.width`` neurons of every GLU layer, in place; returns a report.

    Slices gate/up rows and down columns (and their biases), keeps surviving neurons in their
    original order, and updates ``config.intermediate_size``.
    """
    start = time.perf_counter()
    before = param_count(model)
    triples = glu_layers(model)
    _check_fits(ranking, triples, width)
    for t in triples:
        if width.width == t.width:
            continue  # 0% pruning: leave the layer untouched
        keep = ranking.keep(t.index, width.width).to(t.gate.weight.device)  # [k]
        _slice_linear(t.gate, keep, dim=0)
        _slice_linear(t.up, keep, dim=0)
        _slice_linear(t.down, keep, dim=1)
    if hasattr(model, "config"):
        model.config.intermediate_size = width.width
    return PruneReport(
        metric=ranking.metric,
        width=width.width,
        expansion_ratio=width.expansion_ratio,
        pruning_pct=width.pruning_pct,
        layer_widths=tuple(t.width for t in triples),
        params_before=before,
        params_after=param_count(model),
        seconds=time.perf_counter() - start,
    )


def _check_fits(ranking: Ranking, triples: list, width: Width) -> None:
    """A ranking only indexes the model it was computed on: same layers, same (unpruned) widths."""
    if len(triples) != len(ranking.order):
        raise GluRayError(f"ranking has {len(ranking.order)} layers, the model has {len(triples)}")
    for t in triples:
        if ranking.order[t.index].numel() != t.width:
            raise GluRayError(
                f"ranking was computed for intermediate size {ranking.order[t.index].numel()}, layer {t.index} "
                f"has {t.width} (prune a fresh copy of the model the ranking came from)"
            )
    if not 1 <= width.width <= triples[0].width:
        raise GluRayError(f"width must be in [1, {triples[0].width}] (got {width.width})")


def _slice_linear(linear: nn.Linear, keep: torch.Tensor, dim: int) -> None:
    """Keep rows (dim=0, output neurons) or columns (dim=1, input neurons) ``keep`` of a Linear."""
    grad = linear.weight.requires_grad
    linear.weight = nn.Parameter(linear.weight.index_select(dim, keep), requires_grad=grad)
    if dim == 0:
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.index_select(0, keep), requires_grad=grad)
        linear.out_features = keep.numel()
    else:
        linear.in_features = keep.numel()  # the bias lives on the output side: unchanged


def save_pruned(model: nn.Module, tokenizer, out_dir: str | Path, report: PruneReport | None = None) -> Path:
    """Write a folder that stock ``AutoModelForCausalLM.from_pretrained`` reloads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    if report is not None:
        (out / "glu_ray_prune.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return out
