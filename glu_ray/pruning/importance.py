"""Neuron-importance metrics for GLU MLPs, dispatched through one registry.

Each metric is a small pure function of one layer's weights:
    gate [I, H], up [I, H] (rows = intermediate neurons) -> scores [I] fp32, higher = keep.
Add a metric by decorating a function with ``@metric("name")``: it receives fp32 weights.
A data-driven metric declares ``needs_calibration=True`` and also receives ``down`` [H, I] and the
layer's calibration statistics ``stats`` (a ``NeuronStats``: per-neuron sums of down_proj's input
``x = act(gate(h)) * up(h)`` over the calibration tokens; see calibration.py).

The built-in metrics are registered with ``native=True``: they get the weights in the model's own
dtype and produce, bit for bit, the fp32 scores OptiPFair 0.4.2 computes from ``W.float()``, without
materialising a full fp32 copy of every matrix (on a bf16 model that copy costs more than the
scoring itself). Each says below why its shortcut is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from glu_ray.errors import GluRayError

ScoreFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: ScoreFn
    doc: str
    native: bool = False  # True: takes weights in any float dtype; False: gets them as fp32
    needs_calibration: bool = False  # True: also takes down [H, I] and the layer's NeuronStats

    def __call__(self, gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0, down: torch.Tensor | None = None,
                 stats=None) -> torch.Tensor:
        if not self.native:
            gate, up = gate.float(), up.float()
        if not self.needs_calibration:
            return self.fn(gate, up, seed=seed)
        if down is None or stats is None:
            raise GluRayError(f"metric {self.name!r} is data-driven: it needs calibration data (--calibration)")
        return self.fn(gate, up, seed=seed, down=down if self.native else down.float(), stats=stats)


METRICS: dict[str, Metric] = {}
ALIASES: dict[str, str] = {}  # other names a metric goes by (the study's later files say "PPM" for MAW)


def metric(name: str, *, native: bool = False, aliases: tuple[str, ...] = (),
           needs_calibration: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``fn(gate, up, *, seed) -> scores`` under ``name`` (and ``aliases``).

    ``native=True`` promises the function handles bf16/fp16/fp32 weights itself and still returns
    fp32 scores; otherwise it is called with fp32 copies. ``needs_calibration=True``: the function
    is ``fn(gate, up, *, seed, down, stats)`` and is only called with calibration statistics.
    """

    def register(fn: ScoreFn) -> ScoreFn:
        METRICS[name] = Metric(name, fn, (fn.__doc__ or "").strip(), native, needs_calibration)
        ALIASES.update({alias: name for alias in aliases})
        return fn

    return register


def canonical_metric(name: str) -> str:
    """A metric's registered name for any of its names (``PPM`` -> ``maw``); unknown names lowered."""
    lowered = name.strip().lower()
    return ALIASES.get(lowered, lowered)


def get_metric(name: str) -> Metric:
    try:
        return METRICS[canonical_metric(name)]
    except KeyError:
        raise GluRayError(f"unknown importance metric {name!r}; valid: {', '.join(sorted(METRICS))}") from None


# Rows per block when a metric reads rows as fp32/fp64: 256 x 2048 fp64 = 4 MiB stays in cache, so
# each block is read from memory once however many passes the metric makes over it. Blocks start
# at multiples of 16 rows, so each row keeps the alignment it has in W.float() and vectorised
# reductions add in the same order as OptiPFair's: bit-equal results (tested).
BLOCK_ROWS = 256


def _rowwise(w: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], dtype=torch.float32) -> torch.Tensor:
    """fn over blocks of rows of ``w`` cast to ``dtype``: [I, H] -> [I] of ``dtype``.

    ``fn`` gets a private [rows, H] buffer it may overwrite. On CPU one small buffer is reused;
    elsewhere (GPU) one full-size copy is as fast and simpler.
    """
    if w.device.type != "cpu" or w.shape[0] <= BLOCK_ROWS:
        return fn(w.to(dtype, copy=True))
    out = torch.empty(w.shape[0], dtype=dtype, device=w.device)
    buf = torch.empty(BLOCK_ROWS, w.shape[1], dtype=dtype, device=w.device)
    for start in range(0, w.shape[0], BLOCK_ROWS):
        rows = w[start : start + BLOCK_ROWS]
        block = buf[: rows.shape[0]]
        block.copy_(rows)
        out[start : start + rows.shape[0]] = fn(block)
    return out


def _range(w: torch.Tensor) -> torch.Tensor:
    """max_j W_ij + |min_j W_ij| in fp32, as OptiPFair computes it on W.float(): [I, H] -> [I].

    amax and amin separately: on CPU aminmax is ~10x slower than the two, and the bf16 kernels
    ~2x slower than fp32 ones on a block already in cache.
    """
    return _rowwise(w, lambda block: torch.amax(block, dim=1) + torch.amin(block, dim=1).abs())


def _variance(w: torch.Tensor) -> torch.Tensor:
    """Unbiased row variance, equal to ``torch.var(w.float(), dim=1)``: [I, H] -> [I] fp32.

    On CPU torch.var(fp32) runs a scalar Welford loop in double and rounds the result to fp32:
    ~100 ms per 8192 x 2048 matrix. A vectorised two-pass variance in double (~8 ms) agrees with
    it to far below half an fp32 ulp, so both round to the same fp32 value, except when the
    double value sits within the two algorithms' error of an fp32 rounding midpoint: those few
    rows are recomputed with torch.var itself. Elsewhere (GPU: fp32 accumulation) torch.var is
    called directly, as OptiPFair does.
    """
    if w.device.type != "cpu" or w.shape[1] < 2:
        return torch.var(w.float(), dim=1)

    def two_pass(block: torch.Tensor) -> torch.Tensor:  # [rows, H] fp64, overwritten
        block.sub_(block.mean(dim=1, keepdim=True))
        return block.mul_(block).sum(dim=1) / (block.shape[1] - 1)

    exact = _rowwise(w, two_pass, torch.float64)  # [I] fp64
    scores = exact.float()
    # Both algorithms are within ~n ulps (fp64) of the true variance: 4 n 2^-53 covers them.
    unsure = _near_fp32_midpoint(exact, scores, rel_tol=4 * w.shape[1] * 2.0**-53)
    if unsure.any():
        scores[unsure] = torch.var(w[unsure].float(), dim=1)
    return scores


def _near_fp32_midpoint(exact: torch.Tensor, rounded: torch.Tensor, rel_tol: float) -> torch.Tensor:
    """Entries whose fp64 value is within rel_tol (relative) of an fp32 rounding midpoint: [I] bool."""
    # The gap below |rounded| is the smaller one next to a power of two: a conservative ulp.
    ulp = (rounded.abs() - torch.nextafter(rounded.abs(), torch.zeros(()))).double()
    to_midpoint = ulp / 2 - (exact - rounded.double()).abs()
    return ~torch.isfinite(exact) | (to_midpoint <= rel_tol * exact.abs())


def _norm(w: torch.Tensor, ord: float) -> torch.Tensor:
    """Row p-norm, equal to ``torch.norm(w.float(), p=ord, dim=1)``: [I, H] -> [I] fp32.

    torch's fp32 L1 norm is a strict left-to-right fp32 sum per row, so it cannot be vectorised
    differently without changing the bits: blocking only saves the full fp32 copy.
    """
    return _rowwise(w, lambda block: torch.linalg.vector_norm(block, ord=ord, dim=1))


@metric("maw", native=True, aliases=("ppm",))
def maw(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Maximum Absolute Weight (PPM): (max G_i + |min G_i|) + (max U_i + |min U_i|)."""
    return _range(gate) + _range(up)


@metric("vow", native=True)
def vow(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Variance of Weights: var(G_i) + var(U_i), unbiased."""
    return _variance(gate) + _variance(up)


@metric("pon", native=True)
def pon(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Product of Norms: ||G_i||_1 * ||U_i||_1."""
    return _norm(gate, 1) * _norm(up, 1)


@metric("l2", native=True)
def l2(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Sum of L2 norms: ||G_i||_2 + ||U_i||_2."""
    return _norm(gate, 2) + _norm(up, 2)


@metric("random", native=True)
def random(gate: torch.Tensor, up: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Seeded uniform scores: the baseline any importance metric must beat."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.rand(gate.shape[0], generator=gen).to(gate.device)


# ---------------------------------------------------------------- data-driven (calibration) metrics
# Each gets fp32 gate/up/down and the layer's NeuronStats (fp64 sums); scores are returned in fp32.
# Constant factors shared by every neuron of a layer (1/count, 1/H) do not change a layer's ranking.


@metric("act", needs_calibration=True)
def act(gate, up, *, seed=0, down, stats) -> torch.Tensor:
    """Activation L2 norm ||X_i||_2 over the calibration tokens (Minitron's width signal)."""
    return stats.l2.float()


@metric("wanda_sp", needs_calibration=True)
def wanda_sp(gate, up, *, seed=0, down, stats) -> torch.Tensor:
    """Wanda-sp (FLAP's structured Wanda): mean_j |W_down[j, i]| x RMS of x_i."""
    rms = (stats.sumsq / stats.count).sqrt()
    return (down.abs().double().mean(dim=0) * rms).float()


@metric("flap", needs_calibration=True)
def flap(gate, up, *, seed=0, down, stats) -> torch.Tensor:
    """FLAP's WIFV fluctuation: var(x_i) x ||W_down[:, i]||_2^2 (uniform width: no cross-layer standardising)."""
    return (stats.variance * down.double().pow(2).sum(dim=0)).float()


@metric("hybrid", needs_calibration=True)
def hybrid(gate, up, *, seed=0, down, stats) -> torch.Tensor:
    """OptiPFair's data-driven score: (PPM_gate/max + PPM_up/max + PPM_down/max) x ||X_i||_2.

    The formula and its fp32 arithmetic are OptiPFair 0.4.2's compute_neuron_pair_importance_maw_hybrid;
    what differs is the activation norm fed to it: ours is the norm over all unpadded tokens,
    theirs a sum of per-batch norms counting padding (see tests/test_parity_optipfair.py).
    """
    gate_score, up_score = _range(gate), _range(up)
    down_score = torch.amax(down, dim=0) + torch.amin(down, dim=0).abs()  # columns = neurons
    structural = (gate_score / (gate_score.max() + 1e-8) + up_score / (up_score.max() + 1e-8)
                  + down_score / (down_score.max() + 1e-8))
    return structural * stats.l2.float().to(structural.device)


def score_layer(name: str, gate_w: torch.Tensor, up_w: torch.Tensor, *, seed: int = 0,
                down_w: torch.Tensor | None = None, stats=None) -> torch.Tensor:
    """Scores [I] in fp32 on the weights' device, whatever the model dtype."""
    m = get_metric(name)
    if not m.needs_calibration:
        return m(gate_w.detach(), up_w.detach(), seed=seed)
    return m(gate_w.detach(), up_w.detach(), seed=seed, down=None if down_w is None else down_w.detach(), stats=stats)

