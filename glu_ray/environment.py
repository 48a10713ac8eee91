"""Environment switches for one block: set where the user has not, put back as they were after."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def env_defaults(switches: Mapping[str, str]) -> Iterator[None]:
    """Each of ``switches`` set for the block unless already set (a user's own setting wins); the
    environment as it was afterwards."""
    saved = {k: os.environ.get(k) for k in switches}
    for k, v in switches.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
