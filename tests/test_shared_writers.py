"""Several processes on one experiment or cache: the driver lock (who holds it, a killed holder
does not block), and caches written by concurrent builders (tiny models, rankings)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from glu_ray.errors import GluRayError
from glu_ray.sweep.lock import LOCK_FILE, experiment_lock

pytestmark = pytest.mark.faults

HOLD = """
import sys, time
from pathlib import Path
from glu_ray.sweep.lock import experiment_lock
with experiment_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(root):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_driver_is_told_who_holds_the_experiment(tmp_path):
    root = tmp_path / "exp"
    first = _holder(root)
    try:
        with pytest.raises(GluRayError) as err:
            with experiment_lock(root):
                pass
        message = str(err.value)
        assert f"host {socket.gethostname()}, pid {first.pid}, since 20" in message and "'exp'" in message
        assert "\n" not in message and str(root / LOCK_FILE) in message
    finally:
        first.kill()
        first.wait()


def test_a_lock_left_by_a_killed_driver_does_not_block_a_rerun(tmp_path):
    root = tmp_path / "exp"
    first = _holder(root)
    os.kill(first.pid, signal.SIGKILL)  # no cleanup runs: its line stays in the file
    first.wait()
    assert json.loads((root / LOCK_FILE).read_text())["pid"] == first.pid
    with experiment_lock(root) as me:
        assert json.loads((root / LOCK_FILE).read_text())["pid"] == me.pid == os.getpid()
    assert (root / LOCK_FILE).read_text() == ""  # released: empty
    with experiment_lock(root):  # and free again
        pass


def test_a_line_naming_another_host_blocks_even_when_the_flock_is_free(tmp_path):
    """A shared folder whose file system does not pass locks between hosts: the line still counts."""
    root = tmp_path / "exp"
    root.mkdir()
    (root / LOCK_FILE).write_text(json.dumps({"host": "node-7", "pid": 4242, "since": "2026-01-01T00:00:00Z"}))
    with pytest.raises(GluRayError, match="host node-7, pid 4242, since 2026-01-01T00:00:00Z"):
        with experiment_lock(root):
            pass


def _build(args):
    from glu_ray.models.tiny import build_tiny_model

    out, barrier_time = args
    time.sleep(max(0.0, barrier_time - time.time()))  # start together
    return str(build_tiny_model(out, steps=2, hidden=32, intermediate=64, layers=1))


@pytest.mark.slow  # three spawned processes import torch
def test_tiny_models_built_by_concurrent_processes(tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "tiny-models" / "tiny-x"
    (tmp_path / "tiny-models").mkdir()
    (tmp_path / "tiny-models" / ".tiny-x.tmp-deadhost-1-abcd").mkdir()  # a killed build's leftovers
    with mp.get_context("spawn").Pool(3) as pool:
        paths = pool.map(_build, [(out, time.time() + 3)] * 3)
    assert set(paths) == {str(out)}
    assert AutoModelForCausalLM.from_pretrained(out).config.intermediate_size == 64
    assert sorted(p.name for p in out.parent.iterdir()) == [".tiny-x.lock", "tiny-x"]  # no temporaries left


def _rank(args):
    import torch

    from conftest import make_tiny_llama
    from glu_ray.sweep.ranking_cache import cached_rank

    cache, barrier_time = args
    time.sleep(max(0.0, barrier_time - time.time()))
    ranking, cached = cached_rank(make_tiny_llama(), cache, "tiny-src", None, "maw", 0)
    return cached, torch.cat(list(ranking.order)).tolist()


@pytest.mark.slow
def test_one_ranking_computed_once_by_concurrent_trials(tmp_path):
    with mp.get_context("spawn").Pool(3) as pool:
        results = pool.map(_rank, [(str(tmp_path), time.time() + 3)] * 3)
    assert sorted(cached for cached, _ in results) == [False, True, True]  # scored once, loaded twice
    assert len({tuple(order) for _, order in results}) == 1
    assert not list(tmp_path.glob(".*.tmp-*"))
