"""Start a local Ray that keeps to loopback, however the sweep was launched.

Ray's dashboard process reads ``~/ray_bootstrap_config.yaml`` at start; with no such file it
asks the cloud metadata address (169.254.169.254, twice) and resolves metadata.google.internal
through the system's DNS server, whatever RAY_USAGE_STATS_ENABLED says
(ray/dashboard/modules/usage_stats/usage_stats_head.py -> usage_lib.get_cluster_config_to_report).
So Ray's own processes start with HOME pointing at a folder in the experiment that holds a
bootstrap file saying "local provider"; the driver keeps its HOME, and trial workers get it back
through the job's runtime_env, so Hugging Face and lm-eval caches stay where the user has them.
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps node-IP discovery on 127.0.0.1 (Ray otherwise
"connects" to a public DNS server to find its address).

Ray's token authentication (on unless RAY_AUTH_MODE=disabled) writes its token under that HOME,
``~/.ray/auth_token``; a worker started with the user's HOME would not find it, fail to register
and be restarted every minute while the trial waits for ever. RAY_AUTH_TOKEN_PATH names one
token file for the driver, Ray's processes and the workers: the user's ``~/.ray/auth_token`` if
there is one, else one glu-ray writes once under that HOME.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BOOTSTRAP = "ray_bootstrap_config.yaml"
QUIET_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_home(root: Path) -> Path:
    """``<experiment>/ray-home`` with the bootstrap file (written once, atomically)."""
    home = root / "ray-home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / BOOTSTRAP).is_file():
        tmp = home / f".{BOOTSTRAP}.{os.getpid()}"
        tmp.write_text("# Written by glu-ray: tells Ray's dashboard this is a local cluster, so it never\n"
                       "# probes the cloud metadata address.\nprovider:\n  type: local\n")
        tmp.replace(home / BOOTSTRAP)
    return home


def _new_token(path: Path) -> Path:
    """A token file as Ray's ``ray get-auth-token --generate`` writes it (256 random bits, hex), kept
    once written: with RAY_AUTH_TOKEN_PATH set, Ray reads the file and never creates it."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path


@contextmanager
def loopback_env(root: Path) -> Iterator[dict]:
    """Environment for ``ray.init(address="local", runtime_env=...)``: yields the runtime_env that
    gives trial workers the user's HOME back; restores the driver's environment afterwards."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    user_home = os.path.expanduser("~")
    had = os.environ.get("HOME")
    home = ray_home(root)
    os.environ["HOME"] = str(home)
    token = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if token is None:
        own = Path(user_home) / ".ray" / "auth_token"  # the user's own token, where there is one
        token = str(own if own.is_file() else _new_token(home / ".ray" / "auth_token"))
        # Pinned for the process: Ray keeps the token it loaded first, so a later local instance
        # started here must use the same file (else its GCS never answers).
        os.environ["RAY_AUTH_TOKEN_PATH"] = token
    worker_env = {"HOME": user_home, "RAY_AUTH_TOKEN_PATH": token}
    try:
        yield {"env_vars": worker_env}
    finally:
        if had is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = had
