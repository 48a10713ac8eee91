"""Offline config snapshots of the study's models (``configs/<owner>__<name>.json``).

Used where a model's sizes are needed without the hub: ``--estimate`` and the published tables'
expansion ratios (native width = ``intermediate_size / hidden_size`` from the config).
"""

from __future__ import annotations

import json
from pathlib import Path

SNAPSHOTS = Path(__file__).resolve().parent / "configs"


def snapshot_path(source: str) -> Path | None:
    """The snapshot of hub id ``owner/name``, or of a bare ``name`` when one owner has it."""
    exact = SNAPSHOTS / f"{source.replace('/', '__')}.json"
    if exact.is_file():
        return exact
    if "/" not in source:
        matches = sorted(SNAPSHOTS.glob(f"*__{source}.json"))
        if len(matches) == 1:
            return matches[0]
    return None


def glu_sizes(source: str) -> tuple[int, int] | None:
    """(intermediate_size, hidden_size) from a local model folder's config.json or a snapshot."""
    local = Path(source).expanduser() / "config.json"
    path = local if local.is_file() else snapshot_path(source)
    if path is None:
        return None
    cfg = json.loads(path.read_text())
    cfg = cfg.get("text_config", cfg)  # multimodal configs nest the language model's
    try:
        return int(cfg["intermediate_size"]), int(cfg["hidden_size"])
    except (KeyError, TypeError, ValueError):
        return None
