"""One experiment, one driver: ``driver.lock`` in the experiment folder says who runs it.

The file holds the driver's host, pid and start time while it runs, under an flock. A second
driver of the same experiment finds the flock taken and stops with a one-line error naming the
holder. A driver killed outright (SIGKILL, a power cut) leaves its line behind, but the kernel
released its flock, so a rerun takes over. Where the flock cannot be trusted (a shared folder
whose file system does not pass locks between hosts), a line naming a process that is still
alive on this host, or any process on another host, still blocks, with the file to delete
once that driver is known to be gone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from glu_ray.errors import GluRayError

log = logging.getLogger("glu_ray")
LOCK_FILE = "driver.lock"


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: str  # UTC, ISO 8601

    @classmethod
    def me(cls) -> Holder:
        return cls(socket.gethostname(), os.getpid(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def alive(self) -> bool:
        """On this host: whether the process still exists. Another host's cannot be checked: True."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True


def _read(handle) -> Holder | None:
    handle.seek(0)
    try:
        return Holder(**json.loads(handle.read()))
    except (ValueError, TypeError):
        return None  # empty (released) or not ours


def _holder_of(handle, wait_s: float = 2.0) -> Holder | None:
    """The holder's line, waiting briefly: a driver writes it just after taking the flock."""
    end = time.monotonic() + wait_s
    while (holder := _read(handle)) is None and time.monotonic() < end:
        time.sleep(0.05)
    return holder


def _busy(experiment: str, holder: Holder | None, path: Path) -> GluRayError:
    who = f"host {holder.host}, pid {holder.pid}, since {holder.since}" if holder else "another process"
    return GluRayError(f"experiment {experiment!r} is already being run by another driver ({who}); wait for it to "
                       f"finish, or stop it and rerun this command to resume (lock: {path})")


@contextmanager
def experiment_lock(root: Path) -> Iterator[Holder]:
    """Hold the experiment folder ``root`` for this driver for the ``with`` block."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(root.name, _holder_of(handle), path) from None
        left = _read(handle)
        me = Holder.me()
        if left is not None and (left.host, left.pid) != (me.host, me.pid):
            if left.alive():
                raise _busy(root.name, left, path)
            log.info("taking over %s: its driver (pid %d, since %s) is gone", path, left.pid, left.since)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(asdict(me)))
        handle.flush()
        try:
            yield me
        finally:
            handle.seek(0)
            handle.truncate()  # empty = free; the flock goes when the file closes
