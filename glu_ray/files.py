"""Files that several processes may write at once: caches shared by trials and by drivers.

A cache entry is written under a name no other writer uses (host, pid and a random suffix), then
renamed into place: a reader never sees half an entry, and two writers never collide on a
temporary name. ``file_lock`` makes the second writer wait and reuse the first one's entry
instead of computing it again (the kernel releases it when its holder dies, even by SIGKILL).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, even if we crash
        yield


def temp_sibling(dest: Path) -> Path:
    """A name next to ``dest`` that no other writer, on any host sharing the folder, will use."""
    return dest.with_name(f".{dest.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def clear_leftovers(dest: Path) -> None:
    """Remove temporaries of ``dest`` left by killed writers. Call it holding ``dest``'s lock:
    a live writer holds that lock while it writes, so whatever is left then is dead."""
    for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def publish(tmp: Path, dest: Path) -> bool:
    """Rename the finished ``tmp`` (a file or a folder) to ``dest`` atomically. False, with ``tmp``
    removed, when another writer's folder got there first (theirs is as good as ours)."""
    try:
        os.rename(tmp, dest)  # a folder cannot replace a non-empty one: the first writer wins
        return True
    except OSError:
        if not dest.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        return False
