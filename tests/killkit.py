"""The two attempts of tests/test_faults_driver.py (a sweep killed with SIGKILL mid-sweep, then rerun),
as a function: conftest starts it in a thread when the session starts (a minute of subprocesses,
mostly Ray's start-up), and the module's fixture collects the result. See that module for why.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from faultkit import REPO, ended, kill_tree, offline_env, wait_until
from glu_ray.trials.ledger import Ledger

SECRETS = {"HF_TOKEN": "hf_gluRayTestSecret0123456789", "MLFLOW_TRACKING_TOKEN": "mlflowTestSecret9876543210",
           "HUGGING_FACE_HUB_TOKEN": "hf_gluRayTestSecretHub42"}
PCTS = "25,50,75"  # 1 baseline + 3 pruned trials
N_TRIALS = 4


def _strace_prefix(trace: Path) -> list[str]:
    strace = shutil.which("strace")
    if not strace:
        return []
    # --seccomp-bpf: the kernel stops only on connect, not on every syscall (without it the
    # traced rerun took 4 minutes instead of 40 seconds).
    for flags in (["-f", "--seccomp-bpf"], ["-f"]):
        probe = subprocess.run([strace, *flags, "-qq", "-e", "trace=connect", "-o", "/dev/null", "true"], capture_output=True)
        if probe.returncode == 0:
            return [strace, *flags, "-qq", "-e", "trace=connect", "-o", str(trace)]
    return []  # ptrace not permitted here


def kill_and_rerun(model: Path, text: Path, storage: Path) -> dict:
    """The first attempt, killed once two trials finished; then the same command to the end."""
    cmd = [sys.executable, str(REPO / "sweeps" / "full_grid.py"), "--preset", "tiny", "--models", str(model), "--suite", "tiny",
           "--metrics", "maw", "--pruning-pcts", PCTS, "--tasks", "tiny_mc", "--limit", "4", "--batch-size", "4",
           "--ppl-text", str(text), "--threshold", "1e6", "--storage", str(storage), "--experiment", "killed"]
    # Ray's session folders (logs, sockets) in a folder of the test's own, so they can be read. Ray
    # adds "ray/session_<date>_<pid>/sockets/plasma_store" (~70 characters) and a Unix socket path
    # holds 107 bytes: pytest's /tmp/pytest-of-<user>/pytest-<n>/... outgrew that once n had four
    # digits (the first attempt died on "AF_UNIX path length cannot exceed 107 bytes"), so a short
    # folder under /tmp, removed after the module's tests.
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    env = offline_env(RAY_TMPDIR=str(ray_tmp), **SECRETS)
    ledger = storage / "killed" / "ledger.jsonl"

    first = subprocess.Popen(cmd, env=env, stdout=open(storage / "first.out", "w"),
                             stderr=open(storage / "first.err", "w"), start_new_session=True, cwd=REPO)
    try:
        wait_until(lambda: ledger.exists() and sum(ended(ledger).values()) >= 2 or first.poll() is not None,
                   timeout=600, what="two finished trials in the ledger")
    finally:
        kill_tree(first)
    assert first.returncode != 0, "the first attempt ended on its own before it was killed"
    at_kill = Ledger(ledger).events()
    done_at_kill = {e.key for e in at_kill if e.kind == "end" and e.status.final}
    assert 2 <= len(done_at_kill) < N_TRIALS, ("the kill must land mid-sweep; the first attempt's stderr ends:\n"
                                              + "\n".join((storage / "first.err").read_text().splitlines()[-15:]))

    trace = storage / "connect.trace"
    prefix = _strace_prefix(trace)
    second = subprocess.Popen(prefix + cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO, start_new_session=True)
    try:
        second.stdout_text, second.stderr_text = second.communicate(timeout=900)
    finally:
        kill_tree(second)  # a timed-out rerun leaves no Ray processes behind
    (storage / "second.out").write_text(second.stdout_text)
    (storage / "second.err").write_text(second.stderr_text)
    return dict(storage=storage, ray_tmp=ray_tmp, ledger=ledger, at_kill=at_kill, done_at_kill=done_at_kill, rerun=second,
                trace=trace if prefix else None, uri=f"sqlite:///{storage / 'killed' / 'mlflow.db'}")
