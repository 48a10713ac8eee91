"""Suites are data: every YAML loads and validates; bad input fails with a clear GluRayError."""

from __future__ import annotations

import re

import pytest

from glu_ray.errors import GluRayError
from glu_ray.evaluation.suites import CAPABILITIES, SUITES, load_suite, read_task_dir

MLFLOW_KEY = re.compile(r"^[A-Za-z0-9_\-./ ]+$")
STUDY_TEN = {"wikitext", "mmlu", "arc_challenge", "hellaswag", "winogrande", "piqa", "boolq", "lambada_openai",
             "truthfulqa_mc1", "truthfulqa_mc2"}


@pytest.mark.parametrize("name", SUITES)
def test_every_suite_loads_with_both_stages_and_valid_keys(name):
    suite = load_suite(name)
    assert suite.stage("cheap") and suite.stage("full")
    for b in suite.benchmarks:
        assert MLFLOW_KEY.match(b.key), b.key
        assert b.capability in CAPABILITIES and b.capability != "custom"
        if not b.higher_is_better:  # perplexities have no chance level
            assert b.chance is None


def test_base_has_the_study_benchmarks_with_cot_gsm8k():
    base = load_suite("base")
    assert STUDY_TEN <= set(base.names)
    assert base.get("mmlu").num_fewshot == 5 and base.get("mmlu").chance == 0.25
    gsm = base.get("gsm8k_cot")
    assert (gsm.num_fewshot, gsm.metric, gsm.filter) == (8, "exact_match", "strict-match")
    assert base.get("lambada_openai").extra_metrics == ("perplexity",)
    assert base.get("wikitext").metric == "word_perplexity" and not base.get("wikitext").higher_is_better
    assert not base.apply_chat_template and base.max_length


def test_study_scores_the_headlines_the_study_reports_but_lambada():
    """A sweep on the study suite ranks by the metric the published tables show (GSM8K
    flexible-extract); only LAMBADA differs (the tables report its perplexity, an extra metric)."""
    from analysis.benchmarks import published_meta

    study, published = load_suite("study"), published_meta()
    gsm = study.get("gsm8k")
    assert (gsm.num_fewshot, gsm.filter) == (5, "flexible-extract")
    differ = {b.name for b in study.benchmarks if (b.metric, b.filter) != (published[b.name].metric, published[b.name].filter)}
    assert differ == {"lambada_openai"} and "perplexity" in study.get("lambada_openai").extra_metrics


def test_instruct_is_base_plus_ifeval_with_chat_template():
    base, instruct = load_suite("base"), load_suite("instruct")
    assert instruct.apply_chat_template
    assert instruct.names == base.names + ("ifeval",)
    assert instruct.get("ifeval").extra_metrics == ("inst_level_strict_acc",)


def test_study_reproduces_the_published_settings():
    study = load_suite("study")
    assert "gsm8k_cot" not in study.names
    assert study.get("gsm8k").num_fewshot == 5 and study.get("mmlu").num_fewshot == 5
    assert STUDY_TEN | {"gsm8k", "ifeval"} <= set(study.names)


def test_tiny_points_at_its_own_task_dir():
    tiny = load_suite("tiny")
    (tasks_dir,) = tiny.tasks_dirs
    assert {b.task for b in tiny.benchmarks} <= set(read_task_dir(tasks_dir).tasks)


def test_task_subset_keeps_order_and_unknown_names_list_the_valid_ones():
    assert load_suite("base", tasks=["mmlu", "piqa"]).names == ("mmlu", "piqa")
    with pytest.raises(GluRayError, match="unknown task 'nope'.*mmlu"):
        load_suite("base", tasks=["nope"])
    with pytest.raises(GluRayError, match="valid suites: base, instruct, instruct_mixed, small, study, tiny"):
        load_suite("bogus")
    with pytest.raises(GluRayError, match="unknown stage"):
        load_suite("tiny").stage("medium")


def test_suite_yaml_file_and_bad_entries(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\nextends: tiny\ndrop: [tiny_gsm8k]\n")
    suite = load_suite(str(good))
    assert "tiny_gsm8k" not in suite.names and suite.tasks_dirs == load_suite("tiny").tasks_dirs
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbenchmarks:\n  - {name: x, task: x, num_fewshot: 0, metric: acc, "
                   "higher_is_better: true, chance: 0.5, capability: vibes, stage: cheap}\n")
    with pytest.raises(GluRayError, match="capability 'vibes'"):
        load_suite(str(bad))
    bad.write_text("name: bad\nbenchmarks:\n  - {name: x, task: x}\n")
    with pytest.raises(GluRayError, match="missing keys"):
        load_suite(str(bad))


def test_user_task_dir_parses_or_fails_naming_the_file(tmp_path):
    (tmp_path / "t.yaml").write_text("task: my_task\noutput_type: loglikelihood_rolling\n"
                                     "metric_list:\n  - metric: word_perplexity\n")
    suite = load_suite("tiny", tasks=["tiny_mc", "my_task"], tasks_dir=str(tmp_path))
    mine = suite.get("my_task")
    assert (mine.metric, mine.higher_is_better, mine.capability) == ("word_perplexity", False, "custom")
    (tmp_path / "broken.yaml").write_text("task: [unclosed\n")
    with pytest.raises(GluRayError, match="broken.yaml does not parse"):
        load_suite("tiny", tasks_dir=str(tmp_path))
    (tmp_path / "broken.yaml").write_text("task: b\nprocess_results: !function nowhere.fn\n")
    with pytest.raises(GluRayError, match="does not parse"):
        load_suite("tiny", tasks_dir=str(tmp_path))
    with pytest.raises(GluRayError, match="not a folder"):
        load_suite("tiny", tasks_dir=str(tmp_path / "missing"))


@pytest.mark.slow
def test_every_suite_task_is_known_to_lm_eval():
    from glu_ray.evaluation.harness import check_tasks

    for name in SUITES:
        check_tasks(load_suite(name))


def test_a_self_contained_suite_skips_lm_evals_builtin_index_and_a_real_one_keeps_it():
    """Indexing lm-eval's ~10k YAMLs costs seconds in every trial process: only when needed."""
    from glu_ray.evaluation.harness import task_manager

    tiny = load_suite("tiny")
    own = task_manager(tiny.tasks_dirs, tuple(b.task for b in tiny.benchmarks))
    assert {b.task for b in tiny.benchmarks} <= set(own.all_tasks) and "hellaswag" not in own.all_tasks
    base = load_suite("base")
    full = task_manager(base.tasks_dirs, tuple(b.task for b in base.benchmarks))
    assert "arc_challenge" in full.all_tasks  # lm-eval's own tasks: its index



def test_arc_easy_is_opt_in_through_the_small_suite():
    small, mixed = load_suite("small"), load_suite("instruct_mixed")
    assert small.names == (*mixed.names, "arc_easy") and not small.chat(small.get("arc_easy"))
    assert small.get("arc_easy").task == "arc_easy" and small.get("arc_easy").chance == 0.25
