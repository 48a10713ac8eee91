"""Neuron-importance metrics for GLU MLPs, dispatched through one registry.

Each metric is a small pure function of one layer's weights:
    gate [I, H], up [I, H] (fp32, rows = intermediate neurons) -> scores [I], higher = keep.
Add a metric by decorating a function with ``@metric("name")``; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from glu_ray.errors import GluRayError

ScoreFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: ScoreFn
    doc: str

    def __call__(self, gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        return self.fn(gate, up, seed=seed)


METRICS: dict[str, Metric] = {}


def metric(name: str) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``fn(gate, up, *, seed) -> scores`` under ``name``."""

    def register(fn: ScoreFn) -> ScoreFn:
        METRICS[name] = Metric(name, fn, (fn.__doc__ or "").strip())
        return fn

    return register


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name.lower()]
    except KeyError:
        raise GluRayError(f"unknown importance metric {name!r}; valid: {', '.join(sorted(METRICS))}") from None


def _range(w: torch.Tensor) -> torch.Tensor:
    lo, hi = torch.aminmax(w, dim=1)  # one pass over the rows instead of separate max and min
    return hi + lo.abs()


@metric("maw")
def maw(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Maximum Absolute Weight (PPM): (max G_i + |min G_i|) + (max U_i + |min U_i|)."""
    return _range(gate) + _range(up)


@metric("vow")
def vow(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Variance of Weights: var(G_i) + var(U_i), unbiased."""
    return torch.var(gate, dim=1) + torch.var(up, dim=1)


@metric("pon")
def pon(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Product of Norms: ||G_i||_1 * ||U_i||_1."""
    return torch.linalg.vector_norm(gate, ord=1, dim=1) * torch.linalg.vector_norm(up, ord=1, dim=1)


@metric("l2")
def l2(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Sum of L2 norms: ||G_i||_2 + ||U_i||_2."""
    return torch.linalg.vector_norm(gate, dim=1) + torch.linalg.vector_norm(up, dim=1)


@metric("random")
def random(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Seeded uniform scores: the baseline any importance metric must beat."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.rand(gate.shape[0], generator=gen).to(gate.device)


def score_layer(name: str, gate_w: torch.Tensor, up_w: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Scores [I] in fp32 on the weights' device, whatever the model dtype."""
    fn = get_metric(name)
    return fn(gate_w.float(), up_w.float(), seed=seed)
