"""Shared fixtures: tiny random-init GLU models built in code (no downloads, no ../shared)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest
import torch

# Tests never reach the network.
for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # a local Ray binds to loopback only
}.items():
    os.environ.setdefault(_k, _v)
# ... and see an empty Hugging Face cache of their own: "offline and not cached" must not depend on
# what an earlier `make demo` downloaded under the checkout's HOME (tests of the local hub set theirs).
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="glu-ray-test-hf-")

SHARED = Path(os.environ.get("GLU_RAY_SHARED", Path(__file__).resolve().parents[2] / "shared"))
STORIES = SHARED / "assets" / "models" / "stories260K"


def shared_asset(*parts: str) -> Path:
    """A file under ../shared/assets, or the test skips with one line naming it."""
    path = SHARED.joinpath("assets", *parts)
    if not path.exists():
        pytest.skip(f"../shared/assets/{'/'.join(parts)} not present")
    return path


def tiny_llama_config(**overrides):
    from transformers import LlamaConfig

    cfg = dict(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    cfg.update(overrides)
    return LlamaConfig(**cfg)


def make_tiny_llama(seed: int = 0, **overrides):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(**overrides)).eval()
    return model


def make_tiny_tokenizer(vocab_size: int = 128):
    """A real fast byte-level tokenizer built offline: (tokenizer, vocab size)."""
    from glu_ray.models.tiny import byte_tokenizer

    tok = byte_tokenizer()
    return tok, len(tok)


def save_tiny_model(path: Path, seed: int = 0, **overrides) -> Path:
    """A tiny Llama + tokenizer saved with save_pretrained: a real local 'model path'."""
    tok, vocab = make_tiny_tokenizer()
    model = make_tiny_llama(seed, vocab_size=vocab, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id, **overrides)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def tiny_llama():
    return make_tiny_llama()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def stories_dir() -> Path:
    if not (STORIES / "config.json").is_file():
        pytest.skip("../shared/assets/models/stories260K not present")
    return STORIES


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> Path:
    """One local Ray for the whole session (starting one costs ~10 s of a shared CPU), its workers
    set up by faultkit so a test can inject a fault into any trial; yields the fault plan file.

    ``run_sweep`` joins it (``ray.is_initialized()``); a test must never shut it down.
    """
    import ray
    from ray import cloudpickle

    import faultkit
    from glu_ray.sweep.local_ray import loopback_env

    cloudpickle.register_pickle_by_value(faultkit)  # workers cannot import tests/faultkit.py
    plan = faultkit.plan_file(tmp_path_factory.getbasetemp())
    if ray.is_initialized():
        ray.shutdown()  # someone else's, without the hook
    # As glu_ray.sweep.driver._init_ray would: always a fresh local instance on loopback only,
    # trial output not forwarded (verbose < 2).
    with loopback_env(tmp_path_factory.mktemp("ray-session")) as runtime_env:
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 runtime_env={**runtime_env, "worker_process_setup_hook": faultkit.setup_hook(plan)})
    yield plan
    ray.shutdown()


# -- one finished tiny sweep that several test modules only read --------------------------------
SWEEP_TOKEN = "hf_dummyTOKEN0123456789abcdefghijKLMN"
SWEEP_EXPERIMENT = "tracked"


def tiny_sweep_grid(root: Path):
    """One tiny model x {maw, pon} x 50% + its baseline, stage 0 and two tiny tasks."""
    from glu_ray.models.tiny import build_tiny_model, tiny_eval_text
    from glu_ray.pruning.widths import TargetWidth
    from glu_ray.trials.config import EvalSpec
    from glu_ray.sweep.grid import ModelSpec, SweepGrid
    from glu_ray.trials.stop_rule import StopRule

    model = build_tiny_model(root / "tiny-t", seed=0, steps=40, hidden=32, intermediate=128, layers=2)
    ev = EvalSpec(suite="tiny", tasks=("tiny_mc", "tiny_wikitext"), limit=4, batch_size=4,
                  ppl_text=str(tiny_eval_text(root)))
    return SweepGrid(models=(ModelSpec(str(model), "tiny"),), metrics=("maw", "pon"),
                     targets=(TargetWidth(pruning_pct=50),), eval=ev, stop=StopRule(threshold=1000.0))


@pytest.fixture(scope="session")
def finished_tiny_sweep(tmp_path_factory, ray_cluster):
    """(SweepResult, SweepGrid, SweepOptions) of one finished tiny sweep, run once per session with
    HF_TOKEN set and the token on its command line (as a careless user might). Read by the
    tracking tests (MLflow, no token anywhere) and the browser test (the UI over its store)."""
    import os
    import sys

    from glu_ray.cli.sweep import write_sweep_report
    from glu_ray.sweep.driver import SweepOptions, run_sweep

    root = tmp_path_factory.mktemp("tracking")
    grid = tiny_sweep_grid(root)
    opts = SweepOptions(name=SWEEP_EXPERIMENT, storage=str(root / "runs"), verbose=0)
    saved_argv, saved_token = sys.argv, os.environ.get("HF_TOKEN")
    sys.argv = ["sweeps/full_grid.py", "--preset", "tiny", "--hf-token", SWEEP_TOKEN]
    os.environ["HF_TOKEN"] = SWEEP_TOKEN
    try:
        result = run_sweep(grid, opts)
        write_sweep_report(result)  # as the CLI does after the sweep returns
    finally:  # the token is gone before any other test runs
        sys.argv = saved_argv
        if saved_token is None:
            os.environ.pop("HF_TOKEN", None)
        else:
            os.environ["HF_TOKEN"] = saved_token
    return result, grid, opts


# -- the local Hugging Face hub (tools/hub_mirror) ----------------------------------------------
REPO = Path(__file__).resolve().parents[1]
HUB_DIR = REPO / ".cache" / "hub-mirror"  # what `make mirror` builds and serves
HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class Hub:
    """The running local hub: its endpoint, and the environment of a subprocess that talks to it."""

    def __init__(self, endpoint: str, home: Path):
        self.endpoint, self.home = endpoint, home

    def env(self, endpoint: str | None = None, **extra: str) -> dict[str, str]:
        """This process's environment with HF_ENDPOINT at the hub (or ``endpoint``) and the offline
        switches unset: for that subprocess only (every other test stays offline). Its own
        Hugging Face cache, so every file comes through the hub; NLTK's punkt_tab from ../shared
        (lm-eval's ifeval scoring; a user's NLTK finds its own)."""
        env = {k: v for k, v in os.environ.items() if k not in HUB_OFFLINE_VARS}
        return {**env, "HF_ENDPOINT": endpoint or self.endpoint, "HF_HOME": str(self.home),
                "NLTK_DATA": str(SHARED / "assets" / "nltk_data"), "PYTHONPATH": str(REPO),
                "TOKENIZERS_PARALLELISM": "false", **extra}


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """The local hub, built (cached by its inputs) and started once per session; one that `make
    mirror` started is reused and left running. Skips where ../shared, its source, is absent."""
    import sys

    if not (SHARED / "assets" / "benchmarks").is_dir():
        pytest.skip("../shared/assets absent: the local hub (tools/hub_mirror) is built from it")
    sys.path.insert(0, str(REPO / "tools" / "hub_mirror"))
    import serve

    endpoint, started = serve.up(HUB_DIR)
    yield Hub(endpoint, tmp_path_factory.mktemp("hf-home"))
    if started:
        serve.down(HUB_DIR)


def _selected(request, module: str) -> bool:
    return any(item.nodeid.startswith(f"tests/{module}") for item in request.session.items)


class Background:
    """Work started in a daemon thread (subprocesses that mostly wait: they overlap the tests run
    meanwhile); ``result()`` waits for it and raises what it raised."""

    def __init__(self, fn, *args):
        self._out: dict = {}
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 (re-raised in the test that reads it)
            self._out["error"] = e

    def result(self):
        self._thread.join()
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]


@pytest.fixture(scope="session", autouse=True)
def hub_stopped_early(request, tmp_path_factory):
    """test_hub_stopped.py's two sweeps (tests/hubstopkit.py), started when the session starts where
    that module is selected and the local hub can be built: a Background, else None."""
    if not _selected(request, "test_hub_stopped.py") or not (SHARED / "assets" / "benchmarks").is_dir():
        return None
    import hubstopkit

    return Background(hubstopkit.stop_and_rerun, request.getfixturevalue("hub"), tmp_path_factory.mktemp("hub-stopped"))


@pytest.fixture(scope="session", autouse=True)
def killed_early(request, tmp_path_factory):
    """test_faults_driver.py's killed sweep and its rerun (tests/killkit.py), started when the session
    starts where that module is selected: a Background, else None."""
    if not _selected(request, "test_faults_driver.py"):
        return None
    import killkit
    from faultkit import tiny_model

    model, text = tiny_model(tmp_path_factory.getbasetemp())  # here, not in the thread: one builder at a time
    return Background(killkit.kill_and_rerun, model, text, tmp_path_factory.mktemp("killed"))


@pytest.fixture(scope="session", autouse=True)
def cluster_kit(request, tmp_path_factory):
    """tests/clusterkit.py (two real Ray nodes, test_cluster.py's scenarios), started in the background
    when the session starts, where test_cluster.py is selected: its ~2 minutes are mostly Ray's
    start-up and health checks, so they overlap the tests before it. (process, folder), a reason it
    cannot run here (the module skips with it), or None when not selected."""
    if not _selected(request, "test_cluster.py"):
        yield None
        return
    import clusterkit
    from faultkit import offline_env, tiny_model

    if why := clusterkit.netns_problem():
        yield why
        return
    model, text = tiny_model(tmp_path_factory.getbasetemp())
    out = tmp_path_factory.mktemp("cluster")
    proc = clusterkit.launch(out, model, text, offline_env())
    yield proc, out
    if proc.poll() is None:  # the session ended first (-x, Ctrl-C): SIGINT lets the kit stop its nodes
        import signal
        import subprocess

        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
