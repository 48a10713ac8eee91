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
from glu_ray.models.loading import glu_layers, param_count
from glu_ray.pruning.bias_compensation import add_pruned_mean, check_supported
from glu_ray.pruning.calibration import CalibrationStats, NeuronStats
from glu_ray.pruning.importance import get_metric, score_layer
from glu_ray.pruning.widths import Width


@dataclass(frozen=True)
class Ranking:
    """Neuron ids of every layer, most important first: order[layer] is a permutation of range(I).

    ``scores`` keeps each layer's fp32 scores so that ``keep`` can cut exactly where OptiPFair's
    ``torch.topk`` cuts: bf16 weights give many exactly tied scores (maw of bf16 rows), and topk
    breaks ties its own way, not by index. Without ties the kept set is a prefix of ``order``.
    Every saved ranking has its scores (ranking_cache.FORMAT 2 recomputes older files).
    """

    metric: str
    seed: int
    order: tuple[torch.Tensor, ...]  # [n_layers] x [I] int64, on CPU
    seconds: float
    scores: tuple[torch.Tensor, ...]  # [n_layers] x [I] fp32, on CPU
    calibration: str | None = None  # fingerprint of the calibration the ranking saw, if any
    means: tuple[torch.Tensor, ...] = ()  # [n_layers] x [I] fp64 mean down_proj input: bias compensation

    def keep(self, layer: int, width: int) -> torch.Tensor:
        """The ``width`` most important neurons of ``layer``, in their original order: [width]."""
        # O(I) per layer: re-cutting the stored scores costs nothing next to reading weights.
        return torch.sort(torch.topk(self.scores[layer], width).indices).values

    def save(self, path: str | Path) -> None:
        torch.save(
            {"metric": self.metric, "seed": self.seed, "order": list(self.order), "seconds": self.seconds,
             "scores": list(self.scores), "calibration": self.calibration, "means": list(self.means)},
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> Ranking:
        d = torch.load(path, weights_only=True)
        return cls(d["metric"], d["seed"], tuple(d["order"]), d["seconds"], tuple(d["scores"]),
                   d.get("calibration"), tuple(d.get("means", ())))


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
    bias_compensation: bool = False
    calibration: str | None = None  # fingerprint, when the ranking (or the bias) used calibration

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.metric}: width {self.width} ({self.expansion_ratio:.3f}x, {self.pruning_pct:.1f}% removed) "
            f"in {len(self.layer_widths)} layers; params {self.params_before:,} -> {self.params_after:,} "
            f"({100 * (1 - self.params_after / self.params_before):.1f}% fewer)"
            f"{'; pruned mean added as down_proj bias' if self.bias_compensation else ''}; {self.seconds:.2f}s"
        )


@torch.no_grad()
def rank(model: nn.Module, metric: str, *, seed: int = 0, calibration: CalibrationStats | None = None) -> Ranking:
    """Score every neuron of every GLU layer with ``metric`` and sort, most important first.

    ``calibration`` (from calibration.calibrate on this unpruned model) is what a data-driven
    metric scores from; given to any metric, its per-neuron means are kept for bias compensation.
    """
    m = get_metric(metric)  # fail on an unknown name before touching weights; aliases resolved
    triples = glu_layers(model)
    if m.needs_calibration and calibration is None:
        raise GluRayError(f"metric {m.name!r} is data-driven: it needs calibration data (--calibration)")
    if calibration is not None:
        _check_stats_fit(calibration, triples)
    start = time.perf_counter()
    order, all_scores = [], []
    for t in triples:
        stats = _on_device(calibration.layers[t.index], t.down.weight.device) if m.needs_calibration else None
        # Distinct, reproducible stream per layer for seeded metrics (random).
        scores = score_layer(m.name, t.gate.weight, t.up.weight, seed=seed * 1_000_003 + t.index,
                             down_w=t.down.weight, stats=stats).cpu()  # [I]
        all_scores.append(scores)
        order.append(torch.argsort(scores, descending=True, stable=True))
    means = tuple(s.mean for s in calibration.layers) if calibration is not None else ()
    return Ranking(m.name, seed, tuple(order), time.perf_counter() - start, tuple(all_scores),
                   calibration.fingerprint if calibration is not None else None, means)


def _on_device(stats: NeuronStats, device: torch.device) -> NeuronStats:
    return NeuronStats(stats.sum.to(device), stats.sumsq.to(device), stats.count)


def _check_stats_fit(calibration: CalibrationStats, triples: list) -> None:
    widths = [s.sum.numel() for s in calibration.layers]
    if widths != [t.width for t in triples]:
        raise GluRayError(f"calibration statistics have layer widths {widths[:3]}..., the model "
                          f"{[t.width for t in triples][:3]}...: calibrate the unpruned model being ranked")


@torch.no_grad()
def prune(model: nn.Module, ranking: Ranking, width: Width, *, bias_compensation: bool = False) -> PruneReport:
    """Keep the top ``width.width`` neurons of every GLU layer, in place; returns a report.

    Slices gate/up rows and down columns (and their biases), keeps surviving neurons in their
    original order, and updates ``config.intermediate_size``. ``bias_compensation`` (FLAP) adds the
    pruned neurons' mean contribution to down_proj's bias: it needs a ranking made with calibration.
    """
    start = time.perf_counter()
    before = param_count(model)
    triples = glu_layers(model)
    _check_fits(ranking, triples, width)
    if bias_compensation:
        if not ranking.means:
            raise GluRayError("bias compensation needs calibration data: rank with --calibration")
        check_supported(model.config)
    shrinks = width.width < triples[0].width
    for t in triples:
        if width.width == t.width:
            continue  # 0% pruning: leave the layer untouched
        keep = ranking.keep(t.index, width.width).to(t.gate.weight.device)  # [k]
        if bias_compensation:
            add_pruned_mean(t, keep, ranking.means[t.index])
        _slice_linear(t.gate, keep, dim=0)
        _slice_linear(t.up, keep, dim=0)
        _slice_linear(t.down, keep, dim=1)
    if hasattr(model, "config"):
        model.config.intermediate_size = width.width
        if bias_compensation and shrinks:
            model.config.mlp_bias = True  # every layer now has gate/up/down biases
    return PruneReport(
        metric=ranking.metric,
        width=width.width,
        expansion_ratio=width.expansion_ratio,
        pruning_pct=width.pruning_pct,
        layer_widths=tuple(t.width for t in triples),
        params_before=before,
        params_after=param_count(model),
        seconds=time.perf_counter() - start,
        bias_compensation=bias_compensation,
        calibration=ranking.calibration,
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
