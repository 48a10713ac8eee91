"""Peak memory of a measured region, on CUDA or on the CPU, saying what it measured.

CUDA: the caching allocator's high-water mark (``torch.cuda.max_memory_allocated``), reset at the
start: tensors only (weights, KV cache, activations, logits), not the CUDA context or the
allocator's cached-but-free blocks.

CPU: the process's resident-set high-water mark (``VmHWM`` in /proc/self/status), reset at the start
by writing 5 to /proc/self/clear_refs (Linux >= 4.0). That is every byte the process holds in
RAM (Python, torch, the weights, the measurement's buffers), so the report gives both the peak
and the peak's rise over the resident set at the start, which is what the measured work added in
new pages. glibc's free heap pages are handed back first (``malloc_trim``): otherwise a region's
allocations reuse what earlier work freed but kept resident and barely show (a 16 MiB tensor rose
the peak by 0 MB after an earlier, larger one had been freed). What the allocator still keeps is
not in the rise, so on CPU it is a lower bound of what the work needed.
Without a writable clear_refs the lifetime peak would mostly say how much an earlier stage used,
so the reading is ``unavailable`` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

MEASURED, UNAVAILABLE = "measured", "unavailable"
_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")
MB = 2**20


@dataclass(frozen=True)
class MemoryReading:
    status: str  # MEASURED | UNAVAILABLE
    method: str  # "cuda_max_allocated" | "cpu_peak_rss" | "none"
    peak_mb: float | None  # high-water mark during the region
    delta_mb: float | None  # peak minus what was held at its start: what the region added
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.status == MEASURED


def _proc_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    if not match:
        raise OSError(f"no {field} in {_STATUS}")
    return int(match.group(1))


def _trim_heap() -> None:
    """Return glibc's free heap pages to the OS (no-op where the C library is not glibc)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.reading``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reading: MemoryReading | None = None
        self._start = 0
        self._reason = ""

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif self.device.type == "cpu":
            _trim_heap()
            try:
                _CLEAR_REFS.write_text("5")  # reset VmHWM to the current resident set
                self._start = _proc_kib("VmRSS") * 1024
            except OSError as err:
                self._reason = f"cannot reset the process's peak RSS ({_CLEAR_REFS}: {err.strerror or err})"
        else:
            self._reason = f"no peak-memory counter for device type {self.device.type!r}"
        return self

    def __exit__(self, *exc) -> None:
        if self._reason:
            self.reading = MemoryReading(UNAVAILABLE, "none", None, None, self._reason)
        elif self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.reading = MemoryReading(MEASURED, "cuda_max_allocated", peak / MB, (peak - self._start) / MB)
        else:
            peak = _proc_kib("VmHWM") * 1024
            self.reading = MemoryReading(MEASURED, "cpu_peak_rss", peak / MB, (peak - self._start) / MB)
