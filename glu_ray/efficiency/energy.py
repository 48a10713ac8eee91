"""Energy counters: NVIDIA's NVML total-energy counter, Linux powercap/RAPL, or honestly none.

A meter is opened once for the device the model is on and read around a measured region:

    meter = open_meter(torch.device("cuda", 0))
    start = meter.read()
    ...                                  # the work
    reading = meter.reading(start, seconds)

Where no counter is exposed (no NVML energy support, powercap absent or root-only, a Mac) the
reading says ``unavailable`` with the reason, and ``joules`` is None: a missing counter is never
reported as zero energy. Both counters are device-wide: NVML counts every process on the GPU
(other trials packed on it included), RAPL the whole CPU package (everything the machine runs).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import torch

MEASURED, UNAVAILABLE = "measured", "unavailable"
RAPL_GLOB = "/sys/class/powercap/intel-rapl:[0-9]*"  # packages only: subzones are intel-rapl:0:0


@dataclass(frozen=True)
class EnergyReading:
    status: str  # MEASURED | UNAVAILABLE
    source: str | None  # "nvml" | "rapl"; None when unavailable
    joules: float | None  # None when unavailable, never 0 for "not measured"
    seconds: float  # wall time the counter covered
    scope: str  # what the counter includes
    reason: str = ""  # why unavailable

    @property
    def available(self) -> bool:
        return self.status == MEASURED

    @property
    def watts(self) -> float | None:
        return self.joules / self.seconds if self.joules is not None and self.seconds > 0 else None


class Unavailable:
    """The meter of a device that exposes no energy counter."""

    source = None
    scope = "none"

    def __init__(self, reason: str):
        self.reason = reason

    def read(self) -> None:
        return None

    def reading(self, start, seconds: float) -> EnergyReading:
        return EnergyReading(UNAVAILABLE, None, None, seconds, self.scope, self.reason)


class NvmlMeter:
    """NVML's total energy since the driver loaded (millijoules, Volta and newer)."""

    source = "nvml"
    scope = "whole GPU: every process on it counts"

    def __init__(self, handle, nvml):
        self._handle, self._nvml = handle, nvml

    def read(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0  # mJ -> J

    def reading(self, start: float, seconds: float) -> EnergyReading:
        return EnergyReading(MEASURED, self.source, self.read() - start, seconds, self.scope)


class RaplMeter:
    """Sum of the CPU packages' powercap counters (microjoules, wrapping at max_energy_range_uj)."""

    source = "rapl"
    scope = "whole CPU package(s): every process on the machine counts"

    def __init__(self, zones: list[Path]):
        self._zones = zones
        self._ranges = [int((z / "max_energy_range_uj").read_text()) for z in zones]

    def read(self) -> list[int]:
        return [int((z / "energy_uj").read_text()) for z in self._zones]

    def reading(self, start: list[int], seconds: float) -> EnergyReading:
        total = 0
        for before, after, wrap in zip(start, self.read(), self._ranges):
            total += after - before if after >= before else after + wrap - before  # counter wrapped once
        return EnergyReading(MEASURED, self.source, total / 1e6, seconds, self.scope)


def open_meter(device: torch.device):
    """The energy meter of ``device``: NvmlMeter, RaplMeter, or Unavailable(reason)."""
    if device.type == "cuda":
        return _nvml_meter(device)
    if device.type == "cpu":
        return _rapl_meter()
    return Unavailable(f"no energy counter for device type {device.type!r}")


def _nvml_meter(device: torch.device):
    try:
        import pynvml  # nvidia-ml-py, NVIDIA's own binding
    except ImportError:
        return Unavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
        # NVML numbers every GPU of the machine; CUDA only those in CUDA_VISIBLE_DEVICES (Ray sets
        # it per trial), so the device is found by UUID, never by index.
        uuid = torch.cuda.get_device_properties(device.index or 0).uuid
        handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        meter = NvmlMeter(handle, pynvml)
        meter.read()  # NotSupported before Volta
        return meter
    except (pynvml.NVMLError, RuntimeError, AttributeError) as err:
        return Unavailable(f"NVML total-energy counter not available: {err}")


def _rapl_meter():
    zones = [Path(z) for z in sorted(glob.glob(RAPL_GLOB))]
    if not zones:
        return Unavailable("no Linux powercap/RAPL zones (/sys/class/powercap/intel-rapl:*)")
    unreadable = [z for z in zones if not os.access(z / "energy_uj", os.R_OK)]
    if unreadable:
        return Unavailable(f"{unreadable[0]}/energy_uj is not readable (root-only since Linux 5.10)")
    try:
        meter = RaplMeter(zones)
        meter.read()
        return meter
    except (OSError, ValueError) as err:
        return Unavailable(f"powercap/RAPL counter unreadable: {err}")
