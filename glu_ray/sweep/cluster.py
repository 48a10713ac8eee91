"""Checks a sweep makes of the Ray cluster it joins, before any trial starts.

Every node must see the sweep's storage: trials write their files there (artifacts, the shared
ranking cache) and the driver reads them back. A node that cannot see it would fail each trial
it runs with a file error deep inside; said once, up front: which node, which path.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from glu_ray.errors import GluRayError

PROBE_TIMEOUT_S = 120.0  # a node that is starting its first worker on a busy machine takes a while


def _reads(path: str, token: str) -> bool:
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


def check_storage_shared(root: Path) -> None:
    """Every alive node reads a file the driver just wrote under ``root``; else one line naming the
    node and the path. A one-node cluster (the local one) has nothing to check."""
    import ray  # lazy: only where a sweep runs
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    token = uuid.uuid4().hex
    marker = root / f".storage-probe-{token[:8]}"
    marker.write_text(token)
    try:
        probe = ray.remote(num_cpus=0)(_reads)
        asked = {n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                 .remote(str(marker), token) for n in nodes}
        for node, ref in asked.items():
            try:
                seen = ray.get(ref, timeout=PROBE_TIMEOUT_S)
            except Exception as err:  # noqa: BLE001 - a node that cannot run the probe cannot run a trial either
                if not any(n["NodeID"] == node and n.get("Alive") for n in ray.nodes()):
                    continue  # it died meanwhile (Ray had not noticed yet): it runs no trial either
                raise GluRayError(f"Ray node {node} did not answer whether it sees the sweep's storage {root} "
                                  f"({type(err).__name__})") from None
            if not seen:
                raise GluRayError(f"Ray node {node} cannot see the sweep's storage {root}: --storage must be a "
                                  "folder every node of the cluster shares (e.g. NFS), at the same path")
    finally:
        marker.unlink(missing_ok=True)
