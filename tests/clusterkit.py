"""Two real Ray nodes on this machine, loopback only: the scenarios test_cluster.py asserts on.

Run as a script inside a network namespace that has only ``lo`` (test_cluster.py starts it with
``unshare --net``): there 127.0.0.1 is the only address Ray can find, so a second node may join
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1) and nothing listens on, or reaches, any other interface.
Nodes are ``ray start`` processes, each with its own --temp-dir under the given folder, one
logical GPU and a custom resource naming it; a node is killed by its raylet's pid. Each scenario
runs the real sweep (run_sweep) against the cluster and writes what the test needs to
``<out>/scenarios.json``; ledgers and MLflow stores stay on disk for the test to read.

    python tests/clusterkit.py OUT MODEL TEXT
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
# GCS notices a dead raylet in ~3 s instead of ~30: the retry on the survivor starts sooner.
FAST_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}
SLOW_AFTER_STAGE0_S = 120  # a trial on a node listed in the slow file waits here: killed mid-trial
PACKED = 3  # the packing sweep's pruned trials: each waits after stage 0 until all three are there
BARRIER_ENV = "GLU_RAY_TEST_BARRIER"  # the folder where they meet
BARRIER_WAIT_S = 180


def netns_problem() -> str | None:
    """Why a loopback-only network namespace cannot be made here, or None."""
    import shutil

    if not shutil.which("unshare") or not shutil.which("ip"):
        return "needs unshare and ip (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot make a network namespace ({probe.stderr.strip()[:200]})"


def launch(out: Path, model: Path, text: Path, env: dict[str, str]) -> subprocess.Popen:
    """This script in a network namespace of its own with only ``lo``, in the background (its own
    process group); it writes ``<out>/scenarios.json``, and its output goes to ``<out>/kit.out|err``."""
    cmd = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, str(Path(__file__).resolve()), str(out), str(model), str(text)]
    return subprocess.Popen(cmd, env=env, stdout=open(out / "kit.out", "w"), stderr=open(out / "kit.err", "w"),
                            start_new_session=True)


def _env() -> dict[str, str]:
    return {**os.environ, **FAST_HEALTH, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "PYTHONPATH": str(REPO)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := pred():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_node(tmp: Path, name: str, port: int, head: bool, hide: Path | None = None) -> subprocess.Popen:
    """``ray start --block`` for one node (logical GPU 1, 4 logical CPUs, resource ``name``).
    ``hide``: this node's own mount namespace covers that folder with an empty tmpfs."""
    where = ["--head", f"--port={port}", "--include-dashboard=false"] if head else [f"--address=127.0.0.1:{port}"]
    cmd = [str(BIN / "ray"), "start", "--block", *where, "--node-ip-address=127.0.0.1", "--num-cpus=4",
           "--num-gpus=1", f"--resources={json.dumps({name: 1})}", f"--temp-dir={tmp / name}", "--disable-usage-stats"]
    if hide is not None:
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               f'mount -t tmpfs none "{hide}" && exec "$@"', "sh", *cmd]
    log = open(tmp / f"{name}.log", "w")
    return subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def raylet_pid(node: subprocess.Popen) -> int:
    import psutil

    def find():
        kids = psutil.Process(node.pid).children(recursive=True)
        return next((k.pid for k in kids if k.name() == "raylet"), None)
    return _wait(find, 60, "the node's raylet")


def node_id(name: str) -> str:
    import ray

    return _wait(lambda: next((n["NodeID"] for n in ray.nodes() if n["Alive"] and name in n["Resources"]), None),
                 120, f"node {name} to join")


def slow_hook(slow_file: Path):
    """Worker setup: a trial on a node listed in ``slow_file`` waits after its stage-0 report."""
    def install_slow_nodes():
        import ray

        from glu_ray.sweep import trial

        real = trial.evaluate_stages

        def evaluate_stages(cfg, model, tok, **kw):
            for i, item in enumerate(real(cfg, model, tok, **kw)):
                yield item
                here = ray.get_runtime_context().get_node_id()
                if i == 0 and slow_file.is_file() and here in slow_file.read_text().split():
                    time.sleep(SLOW_AFTER_STAGE0_S)
        trial.evaluate_stages = evaluate_stages
    return install_slow_nodes


def packing_runtime_env(runtime_env: dict | None) -> dict:
    """RAY_RUNTIME_ENV_HOOK of the sweep script's driver: its job's workers install the barrier."""
    env = dict((runtime_env or {}).get("env_vars") or {})
    env.update({BARRIER_ENV: os.environ[BARRIER_ENV], "PYTHONPATH": os.environ["PYTHONPATH"]})
    return {**(runtime_env or {}), "worker_process_setup_hook": "clusterkit.install_barrier", "env_vars": env}


def install_barrier():
    """Worker setup: a pruned trial, after its stage-0 report, waits until PACKED pruned trials have
    reported theirs. They overlap by construction, whatever the machine's load: a trial cannot
    finish (and hand its actor to the next, reuse_actors) before the others have started."""
    from glu_ray.sweep import trial

    real, folder = trial.evaluate_stages, Path(os.environ[BARRIER_ENV])

    def evaluate_stages(cfg, model, tok, **kw):
        for i, item in enumerate(real(cfg, model, tok, **kw)):
            yield item
            if i == 0 and not cfg.is_baseline:
                (folder / f"{os.getpid()}-{abs(hash(cfg.key))}").touch()
                end = time.monotonic() + BARRIER_WAIT_S
                while len(list(folder.iterdir())) < PACKED and time.monotonic() < end:
                    time.sleep(0.2)
    trial.evaluate_stages = evaluate_stages


def kill_when_running_on(ledger: Path, node: str, raylet: int, slow: Path, killed: dict) -> threading.Thread:
    """Kill ``raylet`` once a trial on ``node`` has reported stage 0 and not ended (mid-trial);
    from the sweep's first reference on, trials on ``node`` wait after stage 0 (``slow``)."""
    from glu_ray.trials.ledger import REFERENCE, Ledger
    from glu_ray.vocab import NODE_ID

    def watch():
        end = time.monotonic() + 300
        while time.monotonic() < end and "key" not in killed:
            events = Ledger(ledger).events() if ledger.is_file() else []
            if any(e.kind == REFERENCE for e in events) and not slow.read_text():
                slow.write_text(node)  # the sweep's trials from now on: not the reference run, which ends after stage 0
            ended = {e.key for e in events if e.kind == "end"}
            hit = next((e.key for e in events if e.kind == "result" and e.stage == 0
                        and e.data.get(NODE_ID) == node and e.key not in ended), None)
            if hit:
                os.kill(raylet, signal.SIGKILL)
                killed.update(key=hit, at=time.time())
                return
            time.sleep(0.1)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def main(out: Path, model: Path, text: Path) -> None:
    import ray

    from glu_ray.errors import GluRayError
    from glu_ray.pruning.widths import TargetWidth
    from glu_ray.sweep.driver import SweepOptions, run_sweep
    from glu_ray.sweep.grid import ModelSpec, SweepGrid
    from glu_ray.trials.config import EvalSpec
    from glu_ray.trials.stop_rule import StopRule

    storage, slow = out / "storage", out / "slow-nodes.txt"
    (out / "nodes").mkdir(parents=True, exist_ok=True)
    # Ray's sockets live under each --temp-dir and a Unix socket path holds at most 107 bytes:
    # the nodes' folders are under `out`, reached through a short link.
    tmp = Path(tempfile.mkdtemp(prefix="gr", dir="/tmp")) / "n"
    tmp.symlink_to(out / "nodes")
    slow.write_text("")
    storage.mkdir(exist_ok=True)
    port = _free_port()
    nodes = {"head": start_node(tmp, "head", port, head=True)}
    report: dict = {}
    try:
        _wait(lambda: _accepts(port) or _exited(nodes["head"], tmp / "head.log"), 120, "the head's GCS")
        nodes["w1"] = start_node(tmp, "w1", port, head=False)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False,
                 runtime_env={"worker_process_setup_hook": slow_hook(slow), "env_vars": {"PYTHONPATH": str(REPO)}})
        ids = {name: node_id(name) for name in ("head", "w1")}
        report["address"] = ray.get_runtime_context().gcs_address
        ev = EvalSpec(suite="tiny", tasks=("tiny_mc",), limit=4, batch_size=4, ppl_text=str(text))

        def grid(metrics, pcts):
            return SweepGrid((ModelSpec(str(model), "tiny"),), metrics, tuple(TargetWidth(pruning_pct=p) for p in pcts),
                             ev, StopRule(threshold=1e6))

        def sweep(name, g, **kw):
            t = time.monotonic()
            # One MLflow store for every scenario (each its own experiment): its tables are made once.
            opts = SweepOptions(name=name, storage=str(storage), tracking_uri=f"sqlite:///{storage / 'mlflow.db'}",
                                verbose=0, **kw)
            result = run_sweep(g, opts)
            return {"finished": result.finished, "uri": result.tracking_uri, "seconds": time.monotonic() - t,
                    "ledger": str(result.experiment_dir / "ledger.jsonl"),
                    "keys": [c.key for c in result.trials], "status": {k: str(r["status"]) for k, r in result.rows.items()}}

        # A: the user's own command joining the cluster through RAY_ADDRESS, in a user's shell
        # (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 as `make` sets it). Half a logical GPU per trial: four
        # trials, four half-GPU slots, so each node holds two at once on its one GPU.
        report["packing"] = {**script_sweep(port, storage, model, text), "nodes": dict(ids)}
        # B: the worker's raylet killed mid-trial; one retry: the trial reruns on the head.
        killed: dict = {}
        slow.write_text("")
        watch = kill_when_running_on(storage / "retry" / "ledger.jsonl", ids["w1"], raylet_pid(nodes["w1"]), slow, killed)
        report["retry"] = {**sweep("retry", grid(("maw",), (50,)), gpu_fraction=1.0, max_failures=1),
                           "killed": killed, "worker": ids["w1"], "head": ids["head"]}
        watch.join(timeout=1)
        # C: a second worker killed the same way, no retries: that trial fails; a rerun completes it.
        nodes["w2"] = start_node(tmp, "w2", port, head=False)
        ids["w2"] = node_id("w2")
        killed = {}
        slow.write_text("")
        watch = kill_when_running_on(storage / "no-retry" / "ledger.jsonl", ids["w2"], raylet_pid(nodes["w2"]), slow,
                                     killed)
        first = sweep("no-retry", grid(("maw",), (50,)), gpu_fraction=1.0)
        watch.join(timeout=1)
        slow.write_text("")
        report["no_retry"] = {"first": first, "killed": killed, "worker": ids["w2"],
                              "rerun": sweep("no-retry", grid(("maw",), (50,)), gpu_fraction=1.0)}
        # D: a node whose mount namespace hides the storage behind an empty folder.
        nodes["w3"] = start_node(tmp, "w3", port, head=False, hide=storage)
        ids["w3"] = node_id("w3")
        try:
            sweep("unseen", grid(("maw",), (50,)))
            report["unseen"] = {"error": None, "node": ids["w3"], "storage": str(storage)}
        except GluRayError as err:
            report["unseen"] = {"error": str(err), "node": ids["w3"], "storage": str(storage)}
    finally:
        (out / "scenarios.json").write_text(json.dumps(report, indent=1, default=str))
        ray.shutdown()
        for proc in reversed(list(nodes.values())):
            _stop(proc)
        tmp.unlink()
        tmp.parent.rmdir()


def script_sweep(port: int, storage: Path, model: Path, text: Path) -> dict:
    """``sweeps/full_grid.py`` as a user runs it against this cluster; what it printed, and its ledger."""
    from glu_ray.trials.ledger import Ledger

    cmd = [sys.executable, str(REPO / "sweeps" / "full_grid.py"), "--preset", "tiny", "--models", str(model),
           "--suite", "tiny", "--metrics", "maw,vow,pon", "--pruning-pcts", "50", "--tasks", "tiny_mc", "--limit", "4",
           "--batch-size", "4", "--ppl-text", str(text), "--threshold", "1e6", "--gpu-fraction", "0.5",
           "--storage", str(storage), "--experiment", "packing", "--tracking-uri", f"sqlite:///{storage / 'mlflow.db'}"]
    barrier = storage.parent / "packing-barrier"
    barrier.mkdir(exist_ok=True)
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_RUNTIME_ENV_HOOK": "clusterkit.packing_runtime_env", BARRIER_ENV: str(barrier),
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    t = time.monotonic()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    ledger = storage / "packing" / "ledger.jsonl"
    status = {k: str(v) for k, v in Ledger(ledger).finished().items()} if ledger.is_file() else {}
    return {"finished": run.returncode == 0, "returncode": run.returncode, "stdout": run.stdout, "stderr": run.stderr,
            "uri": f"sqlite:///{storage / 'mlflow.db'}", "seconds": time.monotonic() - t, "ledger": str(ledger),
            "keys": sorted(status), "status": status, "met": sorted(p.name for p in barrier.iterdir())}


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _exited(proc: subprocess.Popen, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"`ray start` exited with {proc.returncode}: {log.read_text()[-2000:]}")
    return False


def _stop(proc: subprocess.Popen) -> None:
    """The node's process group: ``ray start --block`` and what it started (never anything else)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:4]))
