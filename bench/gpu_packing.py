"""Packing: the same trial 1 at a time with a whole device vs k at a time at 1/k of it, via Ray.

Each trial is a Ray task that builds and prunes its model, waits at a barrier (so process start-up
and model building never overlap the timed part), then runs its lm-eval requests. Throughput
ratio = (sum of the sequential trials' run times) / (span of the packed trials' run times).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray

from glu_ray.sweep.local_ray import loopback_env


@ray.remote(num_cpus=0)
class Barrier:
    """k tasks arrive; each polls ``ready`` until all have, then they start together."""

    def __init__(self, k: int) -> None:
        self.k, self.arrived = k, 0

    def arrive(self) -> None:
        self.arrived += 1

    def ready(self) -> bool:
        return self.arrived >= self.k


def _peak_mb(device: str) -> tuple[float, str]:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss"  # Linux: KiB


def pack_trial(spec: dict, barrier) -> dict:
    """One trial inside a Ray worker: build, prune, warm up (untimed), barrier, run workloads (timed)."""
    import torch

    from gpu_trial import build_model, prune_to_pct, run_suite, suite_lm, warm_up  # bench dir on PYTHONPATH

    device = "cuda" if ray.get_gpu_ids() else "cpu"
    if device == "cpu":
        torch.set_num_threads(spec["threads"])
    model = build_model(spec["config"], device, seed=spec["seed"])
    prune_to_pct(model, spec["prune_pct"])
    lm = suite_lm(model, batch_size=spec["batch_size"], max_length=spec["max_length"])
    run = dict(gen_mode=spec["gen_mode"], peak_flops=None, max_gen=spec["max_gen"])
    warm_up(lm, spec["workloads"], gen_mode=spec["gen_mode"])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if barrier is not None:
        ray.get(barrier.arrive.remote())
        while not ray.get(barrier.ready.remote()):
            time.sleep(0.01)
    start = time.time()
    results = run_suite(lm, spec["workloads"], **run)
    end = time.time()
    peak, kind = _peak_mb(device)
    return {"start": start, "end": end, "tokens": sum(r.tokens for r in results), "peak_mem_mb": peak, "peak_kind": kind}


@dataclass(frozen=True)
class PackingResult:
    k: int
    fraction: float
    resource: str  # "GPU" or "CPU"
    sequential_s: float  # sum of run times, one trial at a time on the whole device
    packed_s: float  # first start to last end, k trials at 1/k each
    peak_mem_mb: tuple[float, ...]  # per packed trial
    peak_kind: str

    @property
    def throughput_ratio(self) -> float:
        return self.sequential_s / self.packed_s

    def to_dict(self) -> dict:
        return {**self.__dict__, "throughput_ratio": self.throughput_ratio}

    def summary(self) -> str:
        mem = ", ".join(f"{m:.0f}" for m in self.peak_mem_mb)
        return (f"packing {self.k} trials at {self.fraction:g} {self.resource} vs 1 at a time: "
                f"{self.sequential_s:.2f}s sequential, {self.packed_s:.2f}s packed -> throughput x{self.throughput_ratio:.2f}; "
                f"peak memory per trial ({self.peak_kind}) MB: {mem}")


def _run(spec: dict, k: int, resources: dict, barrier_k: int) -> list[dict]:
    task = ray.remote(pack_trial).options(**resources)
    if barrier_k > 1:
        barrier = Barrier.remote(barrier_k)
        return ray.get([task.remote(spec, barrier) for _ in range(k)])
    return [ray.get(task.remote(spec, None)) for _ in range(k)]  # strictly one after another


def measure_packing(spec: dict, *, k: int, gpu: bool, cpus: int) -> PackingResult:
    """Run ``spec`` k times sequentially on the whole device, then k at once at 1/k of it."""
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    # Workers inherit the driver's environment on a local cluster: let them import this bench.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [bench_dir, os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with loopback_env(Path(tempfile.mkdtemp(prefix="glu-ray-packing-"))) as runtime_env:  # no cloud metadata probe
        ray.init(address="local", include_dashboard=False, num_cpus=cpus, num_gpus=1 if gpu else 0, log_to_driver=False,
                 logging_level="ERROR", runtime_env=runtime_env)
    try:
        whole = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": cpus}
        share = {"num_gpus": 1 / k, "num_cpus": cpus / k} if gpu else {"num_cpus": cpus / k}
        # CPU threads: the whole machine's for a lone trial, a 1/k share (at least 1) when packed.
        seq = _run({**spec, "threads": spec.get("threads") or cpus}, k, whole, 1)
        packed = _run({**spec, "threads": max(1, (spec.get("threads") or cpus) // k)}, k, share, k)
    finally:
        ray.shutdown()
    return PackingResult(
        k=k, fraction=1 / k, resource="GPU" if gpu else "CPU",
        sequential_s=sum(r["end"] - r["start"] for r in seq),
        packed_s=max(r["end"] for r in packed) - min(r["start"] for r in packed),
        peak_mem_mb=tuple(r["peak_mem_mb"] for r in packed), peak_kind=packed[0]["peak_kind"],
    )
