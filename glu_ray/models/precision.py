"""Which dtype a model computes in. ``auto`` (the default everywhere) measures rather than assumes.

On CUDA, bf16 where the device supports it (half the memory of fp32, tensor cores), else fp32.
On a CPU the answer depends on the chip: with bf16 units (AMX, AVX512_BF16) a bf16 matmul runs
several times faster than fp32; on AVX2-only CPUs torch emulates bf16 and the same matmul is
~40-50x *slower* (BENCHMARKS.md "CPU speed"). So ``auto`` times the model's own MLP matmuls in
both dtypes, a few hundred milliseconds once, and keeps the faster. The measurement is cached per
host, torch version, CPU capability, thread count and shape, under ``$GLU_RAY_CACHE``, so each
machine of a cluster measures once for itself. An explicit dtype always wins.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from glu_ray.errors import GluRayError
from glu_ray.files import file_lock, temp_sibling
from glu_ray.models.fetch import cache_root

AUTO = "auto"
# bf16 costs accuracy (word perplexity moves ~0.01% on SmolLM2), so on a CPU it must be clearly
# faster to be chosen: on a loaded machine a near-tie (tiny models, ~1-1.3x) reads either way.
MIN_BF16_GAIN = 1.5
TOKENS = 128  # rows of the timed matmul: a prefill-sized batch
MAX_WEIGHT_ELEMENTS = 1 << 20  # the timed weight is at most 1M elements: bounded time on a 3B model
TIME_PER_DTYPE_S = 0.15

Measure = Callable[[int, int], float]  # (hidden, intermediate) -> bf16 speed / fp32 speed


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a model loads in, and why: recorded with every trial and eval result."""

    dtype: str  # "float32", "bfloat16", ...
    reason: str  # "requested", "cuda: bf16 supported", "cpu: bf16 measured 4.6x fp32", ...
    bf16_speedup: float | None = None  # measured bf16/fp32 matmul throughput (CPU auto only)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "reason": self.reason, "bf16_speedup": self.bf16_speedup}


def check_dtype(name: str | None) -> None:
    """A one-line error for a dtype torch does not have, before anything loads."""
    if name in (None, AUTO):
        return
    if not isinstance(getattr(torch, str(name), None), torch.dtype):
        raise GluRayError(f"unknown dtype {name!r}; use auto (measured), float32 or bfloat16")


def choose_dtype(requested: str | None, device: str, hidden: int, intermediate: int,
                 measure: Measure | None = None) -> DtypeChoice:
    """``requested`` unless it is None/``auto``; then bf16 or fp32 by device (CUDA) or by timing (CPU).
    ``hidden``/``intermediate`` are the model's (``model.config``): the timed matmul has its shape."""
    check_dtype(requested)
    if requested not in (None, AUTO):
        return DtypeChoice(str(requested), "requested")
    if str(device).startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return DtypeChoice("bfloat16", "cuda: bf16 supported")
        return DtypeChoice("float32", "cuda: no bf16 on this device")
    speedup = (measure or cached_bf16_speedup)(hidden, intermediate)
    dtype = "bfloat16" if speedup >= MIN_BF16_GAIN else "float32"
    return DtypeChoice(dtype, f"cpu: bf16 measured {speedup:.2g}x fp32", speedup)


def _timed_shape(hidden: int, intermediate: int) -> tuple[int, int]:
    return hidden, max(1, min(intermediate, MAX_WEIGHT_ELEMENTS // hidden))


def bf16_speedup(hidden: int, intermediate: int) -> float:
    """bf16 over fp32 throughput of the MLP's up and down matmuls ([T, H] @ [H, I] @ [I, H]) on
    this CPU with torch's current thread count."""
    h, i = _timed_shape(hidden, intermediate)
    gen = torch.Generator().manual_seed(0)
    base = [torch.randn(TOKENS, h, generator=gen), torch.randn(h, i, generator=gen), torch.randn(i, h, generator=gen)]

    def seconds_per_pass(dtype: torch.dtype) -> float:
        x, up, down = (t.to(dtype) for t in base)
        with torch.inference_mode():
            start = time.perf_counter()
            (x @ up) @ down  # warm-up: kernel selection, allocator
            warm = time.perf_counter() - start
            if warm > TIME_PER_DTYPE_S:  # emulated bf16: compute dominates, and the answer is clear
                return warm
            runs, start = 0, time.perf_counter()
            while runs < 2 or time.perf_counter() - start < TIME_PER_DTYPE_S:
                (x @ up) @ down
                runs += 1
        return (time.perf_counter() - start) / runs

    return seconds_per_pass(torch.float32) / seconds_per_pass(torch.bfloat16)


def machine_key(hidden: int, intermediate: int) -> str:
    """What the measurement depends on: the host, torch, the kernels it may use, threads, shape."""
    h, i = _timed_shape(hidden, intermediate)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "") + "/" + os.environ.get("ATEN_CPU_CAPABILITY", "")
    return (f"{socket.gethostname()}|torch {torch.__version__}|{torch.backends.cpu.get_cpu_capability()}|{isa}"
            f"|threads {torch.get_num_threads()}|{h}x{i}")


def speed_cache_file() -> Path:
    return cache_root() / "dtype-speed.json"


def cached_bf16_speedup(hidden: int, intermediate: int) -> float:
    """``bf16_speedup``, measured once per ``machine_key`` (packed trials wait for the first one)."""
    path = speed_cache_file()
    key = machine_key(hidden, intermediate)
    with file_lock(path.with_suffix(".lock")):
        entries = _read(path)
        if key not in entries:
            entries[key] = {"bf16_speedup": bf16_speedup(hidden, intermediate), "measured_at": time.time()}
            tmp = temp_sibling(path)
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
            tmp.replace(path)
    return float(entries[key]["bf16_speedup"])


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # absent or torn: measure again (a few hundred milliseconds)


def stored_dtype(config) -> torch.dtype | None:
    """The checkpoint's own dtype (``config.dtype``; ``torch_dtype`` in older configs), if it says."""
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    value = getattr(torch, value, None) if isinstance(value, str) else value
    return value if isinstance(value, torch.dtype) else None


def at_least_stored(choice: DtypeChoice, config) -> DtypeChoice:
    """For a run that saves weights (``glu-ray prune``): an ``auto`` choice never computes below the
    checkpoint's precision, since what is saved would lose bits the checkpoint had."""
    stored = stored_dtype(config)
    if choice.reason == "requested" or stored is None or stored.itemsize <= choice.torch_dtype.itemsize:
        return choice
    name = str(stored).removeprefix("torch.")
    return DtypeChoice(name, f"checkpoint is {name}: kept ({choice.reason})", choice.bf16_speedup)
