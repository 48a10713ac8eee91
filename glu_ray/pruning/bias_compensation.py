"""FLAP's bias compensation: what the pruned neurons added on average comes back as a bias.

A pruned neuron i stops adding ``W_down[:, i] * x_i`` to the residual stream; its expected
contribution over the calibration tokens, ``W_down[:, pruned] @ mean(x_pruned)`` [H], is added
to ``down_proj``'s bias instead. The result is a stock model: Llama-style configs build every MLP
projection with a bias when ``mlp_bias`` is true, so gate/up get zero biases (exactly no change)
and ``from_pretrained`` reloads the folder as it is.
"""

from __future__ import annotations

import torch
from torch import nn

from glu_ray.errors import GluRayError
from glu_ray.models.loading import GLUTriple


def check_supported(config) -> None:
    """Only configs whose ``mlp_bias`` switches on all three MLP biases can store the compensation."""
    if not hasattr(config, "mlp_bias"):
        raise GluRayError(f"bias compensation needs a config with `mlp_bias` (Llama-style); "
                          f"{type(config).__name__} has none, so the saved model could not hold the bias")


@torch.no_grad()
def add_pruned_mean(t: GLUTriple, keep: torch.Tensor, mean: torch.Tensor) -> None:
    """Before slicing ``t`` to ``keep`` [k]: down.bias += W_down[:, pruned] @ mean[pruned], in fp64.

    ``mean`` [I] is the layer's mean down_proj input over the calibration tokens.
    """
    w = t.down.weight  # [H, I]
    pruned = torch.ones(t.width, dtype=torch.bool, device=w.device)
    pruned[keep.to(w.device)] = False
    delta = w[:, pruned].double() @ mean.to(w.device, torch.float64)[pruned]  # [H]
    old = t.down.bias.double() if t.down.bias is not None else torch.zeros_like(delta)
    t.down.bias = nn.Parameter((old + delta).to(w.dtype), requires_grad=w.requires_grad)
    for lin in (t.gate, t.up):
        if lin.bias is None:  # zero: adds exactly nothing, but lets mlp_bias=True reload the folder
            lin.bias = nn.Parameter(torch.zeros(lin.out_features, dtype=lin.weight.dtype, device=lin.weight.device),
                                    requires_grad=lin.weight.requires_grad)
