"""glu-ray ui: the MLflow UI for a sweep's tracking store, on 127.0.0.1 unless asked otherwise.

    glu-ray ui                                   # the most recent sweep's store under runs/
    glu-ray ui --experiment tiny                 # runs/tiny/mlflow.db, opened at that experiment
    glu-ray ui --tracking-uri sqlite:///runs/tiny/mlflow.db --port 5001
    glu-ray ui --host 0.0.0.0                    # reachable from the network: only when asked

Runs ``mlflow server`` on the store (artifacts served from the sweep's ``mlartifacts/``), prints
the URL once the server answers, and stops it on Ctrl-C.
"""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from glu_ray.errors import GluRayError, first_line
from glu_ray.vocab import RUNS_VIEW_KEY, RUNS_VIEW_TAG

STORE = "mlflow.db"  # what a sweep writes under --storage/<experiment>/ (tracking.default_tracking_uri)
ALL_INTERFACES = ("0.0.0.0", "::")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("ui", help="browse a sweep in the MLflow UI (local only by default)")
    p.add_argument("--tracking-uri", help="the store (sqlite:///.../mlflow.db) or a running server's http URL "
                                          "(default: the store under --storage)")
    p.add_argument("--storage", default="runs", help="the sweeps' results folder (default: runs)")
    p.add_argument("--experiment", help="sweep name: its store under --storage and the experiment page to open")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes "
                                                        "the UI to the network)")
    p.add_argument("--port", type=_port, default=5000)
    return p


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"a TCP port is a number in 1..65535, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class Store:
    uri: str  # MLflow backend store URI
    artifacts: Path | None  # where the sweep keeps artifacts (served for runs logged through the server)
    experiment: str | None  # the experiment page to open


def run(args: argparse.Namespace) -> int:
    if args.tracking_uri and args.tracking_uri.startswith(("http://", "https://")):
        print(f"{args.tracking_uri} is a running MLflow server: open it in a browser")
        return 0
    store = find_store(args.tracking_uri, Path(args.storage), args.experiment)
    url = f"http://{_display_host(args.host)}:{args.port}/" + experiment_fragment(store, explicit=bool(args.experiment))
    check_port_free(args.host, args.port)
    _stop_on_signals()
    with tempfile.NamedTemporaryFile("w+", prefix="glu-ray-ui-", suffix=".log", delete=False) as logf:
        proc = subprocess.Popen(server_command(store, args.host, args.port), stdout=logf, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, _display_host(args.host), args.port, Path(logf.name))
        where = " (bound to all interfaces: reachable from the network)" if args.host in ALL_INTERFACES else ""
        print(f"MLflow UI for {store.uri}{where}\n  {url}\nCtrl-C to stop (server log: {logf.name})", flush=True)
        code = proc.wait()
        if code:
            raise GluRayError(f"mlflow server exited with code {code}: {_tail(Path(logf.name))}")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(proc)


def find_store(tracking_uri: str | None, storage: Path, experiment: str | None) -> Store:
    """The store to serve: the given URI, or ``storage/<experiment>/mlflow.db``, or the most recent one."""
    if tracking_uri:
        db = _sqlite_path(tracking_uri)
        if db is not None and not db.is_file():
            raise GluRayError(f"no MLflow store at {db} (run a sweep first, or check --tracking-uri)")
        root = db.parent if db is not None else None
        return Store(tracking_uri, root / "mlartifacts" if root else None, experiment or (root.name if root else None))
    if experiment:
        db = storage / experiment / STORE
        if not db.is_file():
            raise GluRayError(f"no MLflow store at {db} (run the sweep first, or give --storage / --tracking-uri)")
    else:
        found = sorted(storage.glob(f"*/{STORE}"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise GluRayError(f"no MLflow store under {storage}/ (run a sweep first, or give --storage / --tracking-uri)")
        db = found[-1]
        if len(found) > 1:
            others = ", ".join(p.parent.name for p in found[:-1])
            print(f"serving the most recent sweep, {db.parent.name} (also under {storage}/: {others}; "
                  "choose with --experiment)", file=sys.stderr)
    db = db.resolve()
    return Store(f"sqlite:///{db}", db.parent / "mlartifacts", experiment or db.parent.name)


def experiment_fragment(store: Store, *, explicit: bool) -> str:
    """``#/experiments/<id>`` of the sweep's experiment, read from the store before serving it."""
    if not store.experiment:
        return ""
    from mlflow.tracking import MlflowClient  # lazy: mlflow costs ~9 s at import (python -X importtime, shared CPU)

    try:
        exp = MlflowClient(store.uri).get_experiment_by_name(store.experiment)
    except Exception as err:  # noqa: BLE001 - e.g. not an MLflow database
        raise GluRayError(f"cannot read the MLflow store {store.uri}: {first_line(err)}") from None
    if exp is None:
        if explicit:
            raise GluRayError(f"the store {store.uri} has no experiment named {store.experiment!r}")
        return ""  # a store named after another folder: the UI's experiment list is fine
    # MLflow 3 opens experiments on its GenAI (traces) overview unless the URL asks for the
    # model-training view; a sweep is a table of runs.
    view = f"&viewStateShareKey={RUNS_VIEW_KEY}" if RUNS_VIEW_TAG in exp.tags else ""  # the sweep's columns
    return f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning{view}"


def check_port_free(host: str, port: int) -> None:
    """Fail on one line before starting a server that would die on a bound port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise GluRayError(f"port {port} on {host} is in use (choose another with --port)") from None
            raise GluRayError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def server_command(store: Store, host: str, port: int) -> list[str]:
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store.uri,
           "--host", host, "--port", str(port), "--workers", "1"]
    if store.artifacts is not None:
        # Runs a sweep logged keep their own file:// artifact location; this is where anything
        # created through the UI goes, next to them rather than in the current directory.
        cmd += ["--artifacts-destination", store.artifacts.as_uri()]
    return cmd


def wait_ready(proc: subprocess.Popen, host: str, port: int, log: Path, timeout: float = 180.0) -> None:
    """Poll the server's /health (never through a proxy) until it answers or dies."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GluRayError(f"mlflow server exited with code {proc.returncode}: {_tail(log)}")
        try:
            with opener.open(f"http://{host}:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise GluRayError(f"mlflow server did not answer on port {port} within {timeout:.0f} s (log: {log})")


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).expanduser()
    return None


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ALL_INTERFACES else (f"[{host}]" if ":" in host else host)


def _tail(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    return lines[-1] if lines else "no output"


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop the server cleanly (a shell's `cmd &` starts us with SIGINT ignored)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
