"""The local hub (tools/hub_mirror) serves what lm-eval's official tasks and transformers ask for,
as the hub would: the study's suites run through it unchanged, on hub ids, in subprocesses whose
HF_ENDPOINT is the hub (every other test stays offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HUB_DIR, REPO, SHARED

sys.path.insert(0, str(REPO / "tools" / "hub_mirror"))
from repos import read_jsonl, wikitext_pages, winogrande_row

GLU_RAY = str(Path(sys.executable).parent / "glu-ray")
STORIES = "glu-ray-test/stories260K"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
BENCH = SHARED / "assets" / "benchmarks"
needs_shared = pytest.mark.skipif(not BENCH.is_dir(), reason="../shared/assets/benchmarks absent")


def glu_ray(hub, *args: str, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([GLU_RAY, *args], env=hub.env(**env), capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


@needs_shared
def test_winogrande_choices_are_the_files_context_options():
    """lm-eval's own winogrande functions on the mirror's rows give back the slice exactly
    (zip strict: an empty or short list fails)."""
    from lm_eval.tasks.winogrande.preprocess_winogrande import doc_to_choice, doc_to_target, doc_to_text

    rows = read_jsonl(BENCH / "winogrande.jsonl")
    docs = [winogrande_row(r) for r in rows]
    assert len(docs) == len(rows) == 300
    for doc, row in zip(docs, rows, strict=True):
        assert doc_to_choice(doc) == row["context_options"]
        assert doc_to_target(doc) == row["continuation"].strip()
        assert doc_to_text(doc) == row["gold"]
        blank = doc["sentence"].index("_")
        assert blank == 0 or doc["sentence"][blank - 1] == " "  # whole words as options, as the hub's rows


@needs_shared
def test_wikitext_pages_are_lm_evals_62_test_documents():
    raw = (SHARED / "assets" / "text" / "wikitext2_raw_test_original.raw").read_text(encoding="utf-8")
    pages = wikitext_pages(raw)
    assert len(pages) == 62
    assert all(p.startswith(" = ") and not p.startswith(" = = ") for p in pages)
    assert raw == " \n" + "\n".join(pages)  # every byte kept but the blank line before the first article


def test_an_official_task_and_a_hub_model_run_through_the_hub(hub, tmp_path):
    """`glu-ray eval --model <hub id> --tasks arc_challenge`: the model and lm-eval's unmodified task's
    data both come from the hub (an empty HF cache: nothing else could serve them)."""
    out = tmp_path / "arc.json"
    run = glu_ray(hub, "eval", "--model", STORIES, "--suite", "base", "--tasks", "arc_challenge", "--limit", "4",
                  "--out", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["lm_eval"]["n-samples"]["arc_challenge"] == {"original": 300, "effective": 4}
    assert 0.0 <= result["metrics"]["arc_challenge/acc_norm"] <= 1.0
    assert (HUB_DIR / "mirrors" / "models" / STORIES).is_dir()
