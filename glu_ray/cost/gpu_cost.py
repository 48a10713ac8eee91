"""Projected GPU-hours of a sweep, before anything runs.

Per benchmark, a trial spends
    prefill: 2 * params * prefill_tokens / (peak FLOP/s * utilisation)   (+ lm-eval's per-request work)
    decode:  decode_steps * step, step = max(launch-bound floor(layers), weights / bandwidth)
with request counts and token lengths from ``workloads.yaml`` and the GPU and utilisation from
``gpu_costs.yaml`` (analytic assumptions until ``CostProfile.from_measurements`` is given the JSON
that ``bench/gpu_trial.py`` writes on a real GPU). Early-stopped trials cost only stage 0 (the
fast perplexity over WikiText); packed trials (GPU fraction < 1) share a GPU with a throughput gain.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import torch
import yaml

from glu_ray.cost.workloads import GenMode, Workload, WorkloadTable, load_workloads
from glu_ray.errors import GluRayError

BYTES_PER_PARAM = 2  # bf16 weights on GPU


@dataclass(frozen=True)
class GpuSpec:
    name: str
    peak_flops: float  # dense bf16 FLOP/s
    mem_bw: float  # bytes/s


@lru_cache(maxsize=1)
def _cost_data() -> dict:
    return yaml.safe_load(resources.files("glu_ray.cost").joinpath("gpu_costs.yaml").read_text())


def gpu_spec(device_name: str) -> GpuSpec | None:
    """Datasheet figures for ``torch.cuda.get_device_name()`` (longest key contained in it)."""
    gpus = _cost_data()["gpus"]
    hits = [k for k in gpus if k.lower() in device_name.lower()]
    if not hits:
        return None
    key = max(hits, key=len)
    return GpuSpec(device_name, gpus[key]["peak_tflops"] * 1e12, gpus[key]["mem_bw_gbs"] * 1e9)


@dataclass(frozen=True)
class CostProfile:
    """How fast one GPU runs lm-eval on a 1-3B model: assumptions, optionally calibrated."""

    gpu: GpuSpec
    prefill_util: float
    decode_s_per_layer: float
    decode_s_fixed: float
    bw_util: float
    request_overhead_s: float
    trial_overhead_s: float
    batch_size: int
    gen_mode: GenMode
    prefill_gain: Mapping[float, float]  # GPU fraction -> packed/sequential throughput, prefill
    decode_gain: Mapping[float, float]  # ... and decode
    # task -> ((params, measured / analytic seconds), ...) from real GPU runs
    calibration: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    source: str = "analytic assumptions (glu_ray/cost/gpu_costs.yaml), not measured"

    @classmethod
    def default(cls, gpu: str | None = None) -> "CostProfile":
        data = _cost_data()
        name = gpu or data["default_gpu"]
        spec = gpu_spec(name)
        if spec is None:
            raise GluRayError(f"no datasheet figures for GPU {name!r}; known: {', '.join(data['gpus'])}")
        a = dict(data["assumptions"])
        packing = a.pop("packing")
        as_map = lambda m: {float(k): float(v) for k, v in m.items()}  # noqa: E731
        return cls(gpu=spec, prefill_gain=as_map(packing["prefill_gain"]),
                   decode_gain=as_map(packing["decode_gain"]), **a)

    def packing_gain(self, fraction: float) -> tuple[float, float]:
        """(prefill, decode) throughput gain for trials at ``fraction`` of a GPU; 1.0 when alone."""
        if fraction >= 1.0:
            return 1.0, 1.0
        key = min(self.prefill_gain, key=lambda f: abs(math.log(f / fraction)))  # nearest listed
        return self.prefill_gain[key], self.decode_gain[key]

    def factor(self, task: str, params: int) -> float:
        """Measured/analytic time ratio for ``task``, from the measured model nearest in size."""
        points = self.calibration.get(task)
        if not points:
            return 1.0
        return min(points, key=lambda p: abs(math.log(p[0] / params)))[1]


@dataclass(frozen=True)
class TrialCost:
    """One trial, in plain numbers (read them from the model config, never from its name)."""

    name: str
    model: str
    num_params: int  # of the UNPRUNED model
    hidden: int
    intermediate: int
    layers: int
    width: int  # MLP width after pruning (== intermediate for a baseline)
    benchmarks: tuple[str, ...] | str  # task names, or a suite name ("base", "instruct")
    gpu_fraction: float = 1.0
    baseline: bool = False

    @property
    def pruned_params(self) -> int:
        # A bias-free GLU loses gate and up rows and down columns: 3 * H per removed neuron.
        return self.num_params - 3 * self.hidden * (self.intermediate - self.width) * self.layers

    def pruned(self, name: str, width: int) -> "TrialCost":
        """The same model at another width: build one TrialCost per model, then one per trial."""
        return replace(self, name=name, width=width, baseline=False)


@dataclass(frozen=True)
class Seconds:
    prefill: float = 0.0
    decode: float = 0.0

    @property
    def total(self) -> float:
        return self.prefill + self.decode

    def __add__(self, other: "Seconds") -> "Seconds":
        return Seconds(self.prefill + other.prefill, self.decode + other.decode)

    def scale(self, f: float) -> "Seconds":
        return Seconds(self.prefill * f, self.decode * f)


def analytic_seconds(*, prefill_tokens: int, requests: int, decode_steps: int, params: int, layers: int,
                     profile: CostProfile, util: float | None = None) -> Seconds:
    """Time of one benchmark's raw work on ``profile.gpu`` (requests: loglikelihood requests)."""
    util = util or profile.prefill_util
    prefill = 2 * params * prefill_tokens / (profile.gpu.peak_flops * util) + requests * profile.request_overhead_s
    launch_bound = profile.decode_s_fixed + layers * profile.decode_s_per_layer
    bandwidth_bound = params * BYTES_PER_PARAM / (profile.gpu.mem_bw * profile.bw_util)
    return Seconds(prefill, decode_steps * max(launch_bound, bandwidth_bound))


def benchmark_seconds(w: Workload, params: int, layers: int, profile: CostProfile) -> Seconds:
    loglik_requests = 0 if w.kind in ("generate", "rolling") else w.requests
    raw = analytic_seconds(
        prefill_tokens=w.prefill_tokens(), requests=loglik_requests,
        decode_steps=w.decode_steps(profile.batch_size, profile.gen_mode),
        params=params, layers=layers, profile=profile,
    )
    return raw.scale(profile.factor(w.task, params))


@dataclass(frozen=True)
class TrialEstimate:
    name: str
    model: str
    baseline: bool
    gpu_fraction: float
    stage0: Seconds  # fast perplexity + trial overhead: what an early-stopped trial costs
    full: Seconds  # stage0 + every benchmark
    per_benchmark: Mapping[str, float]  # seconds
    unprofiled: tuple[str, ...] = ()  # tasks without a workload profile: not counted

    def packed(self, s: Seconds, profile: CostProfile) -> float:
        """GPU-seconds of ``s`` when run packed: each phase divided by its throughput gain."""
        pre, dec = profile.packing_gain(self.gpu_fraction)
        return s.prefill / pre + s.decode / dec


def estimate_trial(trial: TrialCost, profile: CostProfile, table: WorkloadTable | None = None) -> TrialEstimate:
    table = table or load_workloads()
    params = trial.pruned_params
    names = table.suites.get(trial.benchmarks, ()) if isinstance(trial.benchmarks, str) else trial.benchmarks
    if isinstance(trial.benchmarks, str) and not names:
        table.resolve(trial.benchmarks)  # raises: unknown suite, listing the known ones
    # A user's own lm-eval tasks have no profile: counted as unprofiled, never guessed.
    per = {n: benchmark_seconds(table.workloads[n], params, trial.layers, profile)
           for n in names if n in table.workloads}
    # Stage 0 is the batched fast perplexity over WikiText: full windows, no lm-eval overhead.
    wiki = table.workloads.get("wikitext")
    ppl = Seconds()
    if wiki is not None:
        ppl = analytic_seconds(prefill_tokens=wiki.prefill_tokens(), requests=0, decode_steps=0,
                               params=params, layers=trial.layers, profile=profile)
    stage0 = ppl + Seconds(prefill=profile.trial_overhead_s)
    full = sum(per.values(), stage0)
    return TrialEstimate(trial.name, trial.model, trial.baseline, trial.gpu_fraction, stage0, full,
                         {k: v.total for k, v in per.items()}, tuple(n for n in names if n not in per))


@dataclass(frozen=True)
class Estimate:
    """GPU-hours of a sweep, four ways: {one at a time, packed} x {no early stopping, stopping}."""

    trials: tuple[TrialEstimate, ...]
    profile: CostProfile
    stopped_fraction: float  # of PRUNED trials stopped after stage 0 (baselines always run fully)

    def gpu_hours(self, *, stopping: bool = False, packing: bool = False) -> float:
        total = 0.0
        for t in self.trials:
            cost = (lambda s: t.packed(s, self.profile)) if packing else (lambda s: s.total)
            if stopping and not t.baseline:
                f = self.stopped_fraction
                total += (1 - f) * cost(t.full) + f * cost(t.stage0)
            else:
                total += cost(t.full)
        return total / 3600

    def by_model(self) -> dict[str, tuple[int, float]]:
        """model -> (trials, GPU-hours with neither stopping nor packing)."""
        out: dict[str, tuple[int, float]] = {}
        for t in self.trials:
            n, h = out.get(t.model, (0, 0.0))
            out[t.model] = (n + 1, h + t.full.total / 3600)
        return out

    def benchmark_shares(self) -> dict[str, float]:
        """Fraction of full-trial benchmark time per task, largest first."""
        sums: dict[str, float] = {}
        for t in self.trials:
            for task, s in t.per_benchmark.items():
                sums[task] = sums.get(task, 0.0) + s
        total = sum(sums.values()) or 1.0
        return dict(sorted(((k, v / total) for k, v in sums.items()), key=lambda kv: -kv[1]))

    def table(self) -> str:
        p = self.profile
        lines = [f"Projected GPU cost of {len(self.trials)} trials on {p.gpu.name} "
                 f"({p.gpu.peak_flops / 1e12:.0f} TFLOP/s bf16)", f"  source: {p.source}",
                 f"  {'model':<28}{'trials':>7}{'GPU-h':>9}{'fraction':>10}"]
        fractions = {t.model: t.gpu_fraction for t in self.trials}
        for model, (n, hours) in self.by_model().items():
            lines.append(f"  {model:<28}{n:>7}{hours:>9.2f}{fractions[model]:>10g}")
        pct = f"early stopping ({100 * self.stopped_fraction:.0f}% of pruned trials stop)"
        lines += [f"  {'':<44}{'1 at a time':>13}{'packed':>9}"]
        for label, stop in (("no early stopping", False), (pct, True)):
            lines.append(f"  {label:<44}{self.gpu_hours(stopping=stop):>11.2f} h"
                         f"{self.gpu_hours(stopping=stop, packing=True):>7.2f} h")
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(self.benchmark_shares().items())[:6])
        lines.append(f"  where the time goes: {shares}")
        if missing := sorted({n for t in self.trials for n in t.unprofiled}):
            lines.append(f"  not counted (no workload profile in glu_ray/cost/workloads.yaml): {', '.join(missing)}")
        return "\n".join(lines)


def estimate_sweep(trials: Sequence[TrialCost], profile: CostProfile | None = None, *,
                   stopped_fraction: float = 0.5, table: WorkloadTable | None = None) -> Estimate:
    """Project a sweep's GPU-hours. ``stopped_fraction``: share of pruned trials that early
    stopping ends after stage 0 (an input, since it depends on the threshold and the models)."""
    if not 0 <= stopped_fraction <= 1:
        raise GluRayError(f"stopped_fraction must be in [0, 1] (got {stopped_fraction})")
    if not trials:
        raise GluRayError("no trials to estimate")
    profile = profile or CostProfile.default()
    table = table or load_workloads()
    return Estimate(tuple(estimate_trial(t, profile, table) for t in trials), profile, stopped_fraction)


def with_gpu(profile: CostProfile, gpu: str) -> CostProfile:
    """The same assumptions on another GPU (e.g. the study's L4, to compare with its 4.5-5 h/model)."""
    spec = gpu_spec(gpu)
    if spec is None:
        raise GluRayError(f"no datasheet figures for GPU {gpu!r}")
    return replace(profile, gpu=spec)


def calibrate(profile: CostProfile, measured: Mapping) -> CostProfile:
    """Replace assumptions by what ``bench/gpu_trial.py --json`` measured on a real GPU.

    Each measured benchmark becomes a measured/analytic time factor (keyed by task and model
    size); a packing run replaces the assumed packing gain at its GPU fraction.
    """
    device = str(measured.get("device", ""))
    spec = gpu_spec(device)
    if measured.get("dry_run") or spec is None:
        raise GluRayError(f"measurements from {device or 'an unknown device'!r} cannot calibrate a GPU profile "
                          "(run bench/gpu_trial.py on a GPU without --dry-run)")
    base = replace(profile, gpu=spec)
    points: dict[str, list[tuple[int, float]]] = {}
    for trial in measured.get("trials", []):
        for b in trial["benchmarks"]:
            ideal = analytic_seconds(prefill_tokens=b["prefill_tokens"], requests=b["loglik_requests"],
                                     decode_steps=b["decode_steps"], params=trial["params"],
                                     layers=trial["layers"], profile=base)
            points.setdefault(b["task"], []).append((trial["params"], b["seconds"] / ideal.total))
    pre, dec = dict(base.prefill_gain), dict(base.decode_gain)
    if pack := measured.get("packing"):
        pre[pack["fraction"]] = dec[pack["fraction"]] = pack["throughput_ratio"]
    return replace(base, calibration={k: tuple(v) for k, v in points.items()}, prefill_gain=pre, decode_gain=dec,
                   source=f"calibrated on {device} by bench/gpu_trial.py (scale {measured.get('scale')})")


def load_profile(measurements: str | None = None, gpu: str | None = None) -> CostProfile:
    """The default profile, calibrated by a gpu_trial JSON file when one is given."""
    profile = CostProfile.default(gpu)
    if measurements:
        profile = calibrate(profile, json.loads(Path(measurements).read_text()))
    return profile


def trial_from_config(config, *, name: str, model: str, width: int, benchmarks: tuple[str, ...] | str,
                      gpu_fraction: float = 1.0, baseline: bool = False) -> TrialCost:
    """A TrialCost with sizes read from a transformers config; parameters counted on the meta
    device (exact for any architecture, no weights allocated)."""
    from transformers import (
        AutoModelForCausalLM,  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)
    )

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    return TrialCost(name=name, model=model, num_params=sum(p.numel() for p in skeleton.parameters()),
                     hidden=config.hidden_size, intermediate=config.intermediate_size,
                     layers=config.num_hidden_layers, width=width, benchmarks=benchmarks,
                     gpu_fraction=gpu_fraction, baseline=baseline)
