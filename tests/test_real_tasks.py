"""The real tasks ask exactly what lm-eval's official tasks ask: same request strings, same scoring config.

For every member task of every YAML in glu_ray/evaluation/tasks/real/, the installed lm-eval's
official task is built from its own YAML with only its dataset replaced by the same documents
(offline), and both render requests: plain, and through a chat template with few-shot examples as
turns (how the `real_instruct` suite runs them). The strings must be identical, and so must every
config field that decides scoring (metrics, filters, generation settings, few-shot format). Needs
../shared/assets/benchmarks (GLU_RAY_BENCHMARKS); skips without it.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import datasets
import pytest

from glu_ray.errors import GluRayError
from glu_ray.evaluation.benchmarks import MANIFEST, benchmarks_dir, check_benchmarks
from glu_ray.evaluation.suites import load_suite

REAL_DIR = Path(load_suite("real").tasks_dirs[0])
SHOTS = {b.task: b.num_fewshot for name in ("real", "real_instruct") for b in load_suite(name).benchmarks}
SHOTS["real_gsm8k"] = 5  # the study's plain gsm8k (no suite runs it; `--tasks-dir` can)
GROUPS = sorted(p.stem for p in REAL_DIR.glob("real_*.yaml"))
LIMIT = 12  # documents per task rendered on both sides
# Where the real tasks differ from the official ones on purpose: where the documents come from.
DATA_KEYS = {"dataset_path", "dataset_name", "dataset_kwargs", "custom_dataset", "training_split",
             "validation_split", "test_split", "metadata"}
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

needs_items = pytest.mark.skipif(not (benchmarks_dir() / MANIFEST).is_file(),
                                 reason="../shared/assets/benchmarks absent (set GLU_RAY_BENCHMARKS)")


@pytest.fixture(scope="module")
def manager():
    from glu_ray.evaluation.harness import task_manager

    return task_manager((str(REAL_DIR),))


@pytest.fixture(scope="module")
def chat_template():
    from glu_ray.models.tiny import byte_tokenizer

    tok = byte_tokenizer()
    tok.chat_template = CHATML
    return lambda history, add_generation_prompt=True: tok.apply_chat_template(
        history, tokenize=False, add_generation_prompt=add_generation_prompt)


def _official(manager, name: str, docs: datasets.DatasetDict):
    """lm-eval's own task from its own YAML, its dataset swapped for ``docs`` (every split it names)."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = copy.deepcopy(load_yaml(manager.task_index[name].yaml_path, resolve_func=True))
    for key in ("tag", "group"):
        cfg.pop(key, None)
    eval_split = next(iter(docs))  # the loader serves the eval split first
    wanted = {cfg.get(k) for k in ("training_split", "validation_split", "test_split", "fewshot_split")} - {None}
    # Splits the slice lacks get the eval documents: with 0 shots nothing reads them.
    served = datasets.DatasetDict({s: docs[s] if s in docs else docs[eval_split] for s in wanted})
    cfg["custom_dataset"] = lambda **_: served
    return ConfigurableTask(config=cfg)


def _requests(task, shots: int, **chat) -> list[tuple]:
    task.set_config("num_fewshot", shots)
    task.set_fewshot_seed(1234)
    task.build_all_requests(limit=LIMIT, **chat)
    return [(i.request_type, i.doc_id, i.idx, i.args) for i in task.instances]


def _scoring(task) -> dict:
    config = task.dump_config()
    return {k: v for k, v in config.items() if k not in DATA_KEYS}


@needs_items
@pytest.mark.parametrize("group", GROUPS)
def test_real_task_renders_the_official_requests(group, manager, chat_template):
    loaded = manager.load([group])
    members = loaded["group_map"][group]
    assert members and all(not m.startswith("real_") for m in members)  # official task names
    for name in members:
        ours = loaded["tasks"][name]
        official = _official(manager, name, ours.dataset)
        assert len(ours.eval_docs) == len(official.eval_docs) >= LIMIT
        shots = SHOTS[group]
        plain = _requests(ours, shots)
        assert plain == _requests(official, shots), name
        assert all(isinstance(a, str) and a for r in plain for a in r[3][:1])
        chat = {"apply_chat_template": True, "fewshot_as_multiturn": shots > 0, "chat_template": chat_template}
        assert _requests(ours, shots, **chat) == _requests(official, shots, **chat), name
        assert _scoring(ours) == _scoring(official), name


@needs_items
def test_winogrande_choices_are_the_files_context_options(manager):
    task = manager.load(["real_winogrande"])["tasks"]["winogrande"]
    rows = [json.loads(line) for line in (benchmarks_dir() / "winogrande.jsonl").read_text().splitlines()]
    for doc, row in zip(task.eval_docs, rows):
        assert task.doc_to_choice(doc) == row["context_options"]
        assert task.doc_to_target(doc) == row["continuation"].strip()
        assert task.doc_to_text(doc) == row["gold"]


@needs_items
def test_mmlu_serves_each_subject_its_own_test_items_and_five_dev_shots(manager):
    loaded = manager.load(["real_mmlu"])
    sizes = json.loads((benchmarks_dir() / MANIFEST).read_text())["mmlu_subjects"]
    assert sorted(loaded["group_map"]["real_mmlu"]) == sorted(f"mmlu_{s}" for s in sizes)
    total = 0
    for name in loaded["group_map"]["real_mmlu"]:
        task = loaded["tasks"][name]
        subject = name.removeprefix("mmlu_")
        assert {d["subject"] for d in task.eval_docs} == {subject}
        assert [d["subject"] for d in task.fewshot_docs()] == [subject] * 5
        total += len(task.eval_docs)
    assert total == 1906


def test_missing_items_are_one_clear_error_before_a_model_loads(tmp_path, monkeypatch, capsys, tiny_model_dir):
    from glu_ray.cli.main import main

    monkeypatch.setenv("GLU_RAY_BENCHMARKS", str(tmp_path))
    with pytest.raises(GluRayError, match="real benchmark items not found.*GLU_RAY_BENCHMARKS"):
        check_benchmarks()
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", "real", "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "real benchmark items not found" in err
    assert not (tmp_path / "r.json").exists()


@needs_items
def test_a_changed_item_file_is_refused(tmp_path, monkeypatch):
    for f in benchmarks_dir().iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "boolq.jsonl").write_text('{"question": "edited"}\n')
    monkeypatch.setenv("GLU_RAY_BENCHMARKS", str(tmp_path))
    with pytest.raises(GluRayError, match=r"boolq\.jsonl: sha256"):
        check_benchmarks()


@pytest.mark.slow
@needs_items
# Opt-in: generation tasks (GSM8K-CoT, IFEval at 256 new tokens) on a 135M model did not finish in 15 min
# on this 2-CPU box under load, so CI runs the per-task prompt-identity tests and the demo instead.
@pytest.mark.skipif(not os.environ.get("GLU_RAY_LONG_TESTS"), reason="long real-model run: set GLU_RAY_LONG_TESTS=1")
def test_smollm2_scores_every_real_task_with_the_chat_template(tmp_path):
    """`glu-ray eval --model smollm2 --suite real_instruct`, short form (2 items per task): every task scores.

    Needs `glu-ray fetch smollm2` (CI's setup step); bench/real_tasks.py gives the --limit 20 figures.
    """
    from glu_ray.cli.main import main
    from glu_ray.models.fetch import get_fetchable, is_fetched

    if not is_fetched(get_fetchable("smollm2")):
        pytest.skip("smollm2 not fetched: run `glu-ray fetch smollm2`")
    out = tmp_path / "real.json"
    assert main(["eval", "--model", "smollm2", "--suite", "real_instruct", "--limit", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    suite = load_suite("real_instruct")
    for bench in suite.benchmarks:
        value = result["metrics"][bench.key]
        assert bench.key.startswith(bench.name) and (value >= 0 if bench.higher_is_better else value > 0)
        if bench.higher_is_better:
            assert value <= 1
    assert "ifeval/inst_level_strict_acc" in result["metrics"]  # lm-eval's real checkers ran (NLTK found)
    assert result["lm_eval"]["glu_ray"]["gen_kwargs"] == {"max_gen_toks": 256}
