"""A user's own lm-eval task folder, written here: a group with an aggregate, a tag, a generating
task; groups and tags wherever tasks go, the folder's own tasks without --tasks, per-task few-shot
counts (the same task at two), --gen_kwargs, and every reported metric in the printed table."""

from __future__ import annotations

import json

import pytest

from glu_ray.cli.main import main
from glu_ray.errors import GluRayError
from glu_ray.evaluation.harness import check_tasks, merge_raw
from glu_ray.evaluation.suites import load_suite, read_task_dir, with_fewshot

UTILS = '''import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def load_jsonl(files, **_metadata):
    return datasets.DatasetDict({split: datasets.Dataset.from_list(
        [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()])
        for split, name in files.items()})
'''
MC = [{"q": "Where does a fish live?", "choices": ["water", "tree", "sky", "box"], "answer": 0},
      {"q": "What do you see with?", "choices": ["ears", "eyes", "feet", "hat"], "answer": 1},
      {"q": "What is hot?", "choices": ["ice", "snow", "fire", "rain"], "answer": 2},
      {"q": "What flies?", "choices": ["rock", "fish", "cup", "bird"], "answer": 3}]
SUMS = [{"q": f"{a}+{b}=", "a": str(a + b)} for a, b in ((1, 1), (2, 3), (4, 4), (5, 1))]


def _mc(name: str, prompt: str) -> str:
    return f"""task: {name}
tag: my_tag
custom_dataset: !function utils.load_jsonl
dataset_kwargs:
  files: {{train: mc.jsonl, test: mc.jsonl}}
output_type: multiple_choice
training_split: train
test_split: test
doc_to_text: "{prompt} {{{{q}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
  - {{metric: acc_norm, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
"""


GEN = """task: sums
custom_dataset: !function utils.load_jsonl
dataset_kwargs:
  files: {train: sums.jsonl, test: sums.jsonl}
output_type: generate_until
training_split: train
test_split: test
doc_to_text: "{{q}}"
doc_to_target: "{{a}}"
generation_kwargs: {until: ["\\n"], do_sample: false, max_gen_toks: 16}
metric_list:
  - {metric: exact_match, aggregation: mean, higher_is_better: true}
metadata: {version: 1.0}
"""
GROUP = """group: qa_group
task: [qa_a, qa_b]
aggregate_metric_list:
  - {metric: acc, weight_by_size: true}
metadata: {version: 1.0}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("my_tasks")
    (root / "utils.py").write_text(UTILS)
    (root / "mc.jsonl").write_text("\n".join(map(json.dumps, MC)) + "\n")
    (root / "sums.jsonl").write_text("\n".join(map(json.dumps, SUMS)) + "\n")
    (root / "qa_a.yaml").write_text(_mc("qa_a", "Question:"))
    (root / "qa_b.yaml").write_text(_mc("qa_b", "Q:"))
    (root / "sums.yaml").write_text(GEN)
    (root / "qa_group.yaml").write_text(GROUP)
    return root


def test_folder_knows_its_tasks_groups_and_tags(folder):
    f = read_task_dir(str(folder))
    assert f.top == ("qa_group", "sums")  # grouped tasks run through their group
    assert [b.name for b in f.expand("my_tag")] == ["qa_a", "qa_b"]
    group = f.expand("qa_group")[0]
    assert (group.task, group.metric, group.higher_is_better, group.num_fewshot) == ("qa_group", "acc", True, 0)


def test_groups_and_tags_work_wherever_tasks_do(folder):
    suite = load_suite("tiny", tasks=["tiny_mc", "qa_group", "sums"], tasks_dir=str(folder))
    assert suite.names == ("tiny_mc", "qa_group", "sums")
    assert load_suite("tiny", tasks=["my_tag"], tasks_dir=str(folder)).names == ("qa_a", "qa_b")
    check_tasks(suite)  # lm-eval finds the suite's own and the folder's tasks, groups included
    assert load_suite("tiny", tasks_dir=str(folder)).names == ("qa_group", "sums")  # no --tasks: the folder's
    with pytest.raises(GluRayError, match="unknown task 'nope'.*qa_group.*sums"):
        load_suite("tiny", tasks=["nope"], tasks_dir=str(folder))
    with pytest.raises(GluRayError, match="qa_a, qa_b already run as part of group 'qa_group'"):
        load_suite("tiny", tasks=["qa_group", "my_tag"], tasks_dir=str(folder))  # lm-eval would refuse it late


def test_fewshot_counts_per_benchmark_and_the_same_task_at_two(folder):
    suite = load_suite("tiny", tasks=["qa_a", "sums"], tasks_dir=str(folder))
    twice = with_fewshot(suite, {"qa_a": (0, 2), "sums": (1,)})
    assert [(b.name, b.task, b.num_fewshot) for b in twice.benchmarks] == [
        ("qa_a_0shot", "qa_a", 0), ("qa_a_2shot", "qa_a", 2), ("sums", "sums", 1)]
    assert {b.num_fewshot for b in with_fewshot(suite, 3).benchmarks} == {3}
    with pytest.raises(GluRayError, match="'mmlu', which is not selected"):
        with_fewshot(suite, {"mmlu": (5,)})


def test_raw_output_keeps_each_fewshot_call_of_a_task():
    calls = [(0, {"results": {"qa_a": {"acc,none": 0.25}, "sums": {"exact_match,none": 0.0}}, "n-shot": {"qa_a": 0}}),
             (2, {"results": {"qa_a": {"acc,none": 0.5}}, "n-shot": {"qa_a": 2}})]
    raw = merge_raw(calls)
    assert raw["results"] == {"qa_a (0-shot)": {"acc,none": 0.25}, "sums": {"exact_match,none": 0.0},
                              "qa_a (2-shot)": {"acc,none": 0.5}}
    assert raw["n-shot"] == {"qa_a (0-shot)": 0, "qa_a (2-shot)": 2}


@pytest.mark.parametrize("argv, message", [
    (["--num_fewshot", "qa_a=two"], "non-negative integers"),
    (["--num_fewshot", "=3"], "NAME=K"),
    (["--gen_kwargs", "max_gen_toks"], "KEY=VALUE"),
])
def test_bad_settings_are_argparse_errors(folder, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--model", str(tmp_path), "--tasks-dir", str(folder), "--out", str(tmp_path / "r.json"), *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_eval_without_tasks_runs_the_folder_and_reports_the_group_aggregate(folder, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", "tiny", "--tasks-dir", str(folder),
                 "--batch_size", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.index("running the folder's own tasks") < printed.index("evaluating qa_group (qa_group, 0-shot)")
    written = json.loads(out.read_text())
    assert {"qa_group/acc", "qa_group/acc_stderr", "sums/exact_match"} <= set(written["metrics"])
    assert written["lm_eval"]["groups"]["qa_group"]["acc,none"] == written["metrics"]["qa_group/acc"]
    assert set(written["lm_eval"]["group_subtasks"]["qa_group"]) == {"qa_a", "qa_b"}
    assert any(line.split()[:1] == ["qa_group"] and " acc " in f" {line} " for line in printed.splitlines())


@pytest.mark.slow
def test_eval_honours_per_task_fewshot_gen_kwargs_and_prints_every_metric(folder, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", "tiny", "--tasks-dir", str(folder),
                 "--tasks", "qa_a,sums", "--num_fewshot", "qa_a=0,qa_a=2,sums=1", "--gen_kwargs", "max_gen_toks=3",
                 "--out", str(out)]) == 0
    raw = json.loads(out.read_text())["lm_eval"]
    assert raw["n-shot"]["qa_a (0-shot)"] == 0 and raw["n-shot"]["qa_a (2-shot)"] == 2 and raw["n-shot"]["sums"] == 1
    assert {"qa_a (0-shot)", "qa_a (2-shot)", "sums"} <= set(raw["results"])
    assert raw["configs"]["sums"]["generation_kwargs"]["max_gen_toks"] == 3  # the task's 16, overridden
    assert raw["glu_ray"]["gen_kwargs"] == {"max_gen_toks": 3}
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    for name in ("qa_a_0shot", "qa_a_2shot"):
        assert {r[4] for r in rows if r[:1] == [name]} == {"acc", "acc_norm"}  # every metric, not only the first
