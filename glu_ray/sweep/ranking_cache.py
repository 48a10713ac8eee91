"""One neuron ranking per (model, revision, metric, seed, calibration), shared by every trial of a sweep.

Trials that need the same ranking may run at once in different processes: a file lock makes the
first one compute it and the others wait and load it, so the weights are scored once per pair.
A ranking that reads calibration data is keyed by the calibration's fingerprint too, and the
calibration statistics themselves are cached per (model, calibration): act, flap and hybrid of
one model share one forward pass over the calibration text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from torch import nn

from glu_ray.files import file_lock, publish, temp_sibling
from glu_ray.pruning.calibration import CalibrationSpec, CalibrationStats, calibrate
from glu_ray.pruning.prune import Ranking, rank

# Bump when Ranking's saved fields change, so stale cache files are recomputed, never misread.
FORMAT = 3  # 2: per-layer scores saved too (ties broken as torch.topk does); 3: calibration + means


def _model_digest(model: str, revision: str | None) -> str:
    where = Path(model).expanduser().resolve() if Path(model).exists() else model
    return hashlib.sha1(f"{where}@{revision}".encode()).hexdigest()[:12]


def ranking_path(cache_dir: str | Path, model: str, revision: str | None, metric: str, seed: int,
                 calibration: str | None = None) -> Path:
    calib = f"-calib{calibration}" if calibration else ""
    return Path(cache_dir) / f"{_model_digest(model, revision)}-{metric}-seed{seed}{calib}-v{FORMAT}.pt"


def stats_path(cache_dir: str | Path, model: str, revision: str | None, calibration: str) -> Path:
    return Path(cache_dir) / f"{_model_digest(model, revision)}-calibration-{calibration}.pt"


def _once(path: Path, compute: Callable, load: Callable):
    """(value, was_cached): computed by the first process to take the lock, loaded by the others."""
    with file_lock(path.with_suffix(".lock")):
        if path.exists():
            return load(path), True
        value = compute()
        tmp = temp_sibling(path)  # unique even where the lock is not shared (some network file systems)
        value.save(tmp)
        publish(tmp, path)  # atomic: a reader never sees half a file
        return value, False


def cached_rank(
    model: nn.Module, cache_dir: str | Path | None, source: str, revision: str | None, metric: str, seed: int,
    *, calibration: CalibrationSpec | None = None, tokenizer=None, batch_size: int = 8,
) -> tuple[Ranking, bool]:
    """(ranking, was_cached). ``model`` must be the unpruned model loaded from ``source``.

    With ``calibration`` (and the model's ``tokenizer``), the ranking is made from that calibration's
    statistics, themselves computed at most once per (model, calibration) in ``cache_dir``.
    """
    def stats() -> CalibrationStats | None:
        if calibration is None:
            return None
        def run() -> CalibrationStats:
            return calibrate(model, tokenizer, calibration, batch_size=batch_size)

        if cache_dir is None:
            return run()
        return _once(stats_path(cache_dir, source, revision, calibration.fingerprint), run, CalibrationStats.load)[0]

    def compute() -> Ranking:
        return rank(model, metric, seed=seed, calibration=stats())

    if cache_dir is None:
        return compute(), False
    fingerprint = calibration.fingerprint if calibration is not None else None
    return _once(ranking_path(cache_dir, source, revision, metric, seed, fingerprint), compute, Ranking.load)
