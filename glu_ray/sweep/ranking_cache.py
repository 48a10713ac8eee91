"""One neuron ranking per (model, revision, metric, seed), shared by every trial of a sweep.

Trials that need the same ranking may run at once in different processes: a file lock makes the
first one compute it and the others wait and load it, so the weights are scored once per pair.
"""

from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path

from torch import nn

from glu_ray.pruning.prune import Ranking, rank


# Bump when Ranking's saved fields change, so stale cache files are recomputed, never misread.
FORMAT = 2  # 2: per-layer scores saved too (ties broken as torch.topk does)


def ranking_path(cache_dir: str | Path, model: str, revision: str | None, metric: str, seed: int) -> Path:
    where = Path(model).expanduser().resolve() if Path(model).exists() else model
    digest = hashlib.sha1(f"{where}@{revision}".encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{digest}-{metric}-seed{seed}-v{FORMAT}.pt"


def cached_rank(
    model: nn.Module, cache_dir: str | Path | None, source: str, revision: str | None, metric: str, seed: int
) -> tuple[Ranking, bool]:
    """(ranking, was_cached). ``model`` must be the unpruned model loaded from ``source``."""
    if cache_dir is None:
        return rank(model, metric, seed=seed), False
    path = ranking_path(cache_dir, source, revision, metric, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even if we crash
        if path.exists():
            return Ranking.load(path), True
        ranking = rank(model, metric, seed=seed)
        tmp = path.with_suffix(".tmp")
        ranking.save(tmp)
        tmp.replace(path)  # atomic: a reader never sees half a file
        return ranking, False
