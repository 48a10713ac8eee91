"""Online preflight against the local hub: before any model loads, every model and dataset
repository a run needs is asked for at the endpoint in use, in one pass; each problem is one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from conftest import REPO

GLU_RAY = str(Path(sys.executable).parent / "glu-ray")


def _run(hub, cmd: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=hub.env(**env), capture_output=True, text=True, timeout=300, cwd=REPO)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_and_gated_repos_are_one_line_each_in_one_pass_before_ray(hub, tmp_path):
    """A sweep over a missing model, a gated one (the hub's 401 GatedRepo, which the local hub gives
    for the study's Llama repositories) and the `study` suite, whose MuSR the hub does not hold."""
    run = _run(hub, [sys.executable, str(REPO / "sweeps" / "full_grid.py"), "--models",
                     "nobody/no-such-model,meta-llama/Llama-3.2-1B", "--suite", "study", "--metrics", "maw",
                     "--pruning-pcts", "10", "--storage", str(tmp_path / "runs")])
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    problems = lines[0].split(": ", 1)[1].split("; ")
    assert f"model nobody/no-such-model not found at {hub.endpoint}" in problems
    assert (f"model meta-llama/Llama-3.2-1B is gated: accept its licence at {hub.endpoint}/meta-llama/Llama-3.2-1B "
            "and set HF_TOKEN") in problems
    assert f"dataset TAUR-Lab/MuSR not found at {hub.endpoint} (needed by leaderboard_musr)" in problems
    assert len(problems) == 3  # every other repository of the suite (and stage 0's WikiText) is there
    assert not (tmp_path / "runs").exists()  # nothing started


def test_the_study_suite_names_musr_and_eval_loads_no_model(hub, tmp_path):
    run = _run(hub, [GLU_RAY, "eval", "--model", "glu-ray-test/stories260K", "--suite", "study",
                     "--out", str(tmp_path / "r.json")])
    assert run.returncode == 2
    assert run.stderr.strip() == (f"glu-ray eval: error: dataset TAUR-Lab/MuSR not found at {hub.endpoint} "
                                  "(needed by leaderboard_musr)")
    assert "evaluating" not in run.stdout


def test_a_hub_that_does_not_answer_is_one_line(hub, tmp_path):
    """What `make demo` meets on a machine with neither internet nor a local hub."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    run = _run(hub, [GLU_RAY, "eval", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct", "--suite", "instruct",
                     "--tasks", "piqa", "--out", str(tmp_path / "r.json")], HF_ENDPOINT=endpoint)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith(f"glu-ray eval: error: cannot reach the Hugging Face hub at {endpoint} ")
