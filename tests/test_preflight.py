"""Offline, a task whose hub dataset is not cached is one line before any model loads: for a task,
a group and a tag of a user's folder, for `glu-ray eval` and for a sweep (before Ray starts);
tasks that read local data pass; online nothing is looked up."""

from __future__ import annotations

import json

import datasets
import pytest

from glu_ray.cli.main import main
from glu_ray.errors import GluRayError
from glu_ray.evaluation.preflight import check_hub_data, check_suite_inputs
from glu_ray.evaluation.suites import load_suite

NEVER_CACHED = "glu-ray-tests/never-cached"


def _task(name: str, dataset_path: str, tag: str = "") -> str:
    return f"""task: {name}
{f"tag: {tag}" if tag else ""}
dataset_path: {dataset_path}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{q}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """local_mc reads a local dataset folder; hub_mc a hub dataset no cache holds; a group and a tag over both."""
    root = tmp_path_factory.mktemp("pf_tasks")
    data = tmp_path_factory.mktemp("pf_data")
    (data / "test.jsonl").write_text("\n".join(json.dumps({"q": f"{i}?", "choices": ["a", "b"], "answer": i % 2})
                                               for i in range(4)))
    (root / "local_mc.yaml").write_text(_task("local_mc", str(data)))
    (root / "hub_mc.yaml").write_text(_task("hub_mc", NEVER_CACHED, tag="pf_tag"))
    (root / "pf_group.yaml").write_text("group: pf_group\ntask: [local_mc, hub_mc]\n"
                                        "aggregate_metric_list:\n  - {metric: acc}\nmetadata: {version: 1.0}\n")
    return root


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))


def _suite(folder, tasks):
    return load_suite("base", tasks=tasks, tasks_dir=str(folder))


# A group is one benchmark (its aggregate); a tag stands for its tasks, each a benchmark.
@pytest.mark.parametrize("task, benchmark", [("hub_mc", "hub_mc"), ("pf_group", "pf_group"), ("pf_tag", "hub_mc")])
def test_offline_uncached_hub_dataset_is_named_with_its_benchmark(folder, offline, task, benchmark):
    with pytest.raises(GluRayError) as err:
        check_suite_inputs(_suite(folder, [task]))
    text = str(err.value)
    assert "\n" not in text and text.startswith("offline")
    assert f"{NEVER_CACHED} for {benchmark}." in text and "pf_data" not in text  # the local dataset is fine


def test_local_data_passes_offline_and_nothing_is_looked_up_online(folder, offline, monkeypatch):
    check_suite_inputs(_suite(folder, ["local_mc"]))  # a local dataset folder resolves offline
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    def no_lookup(*args, **kwargs):
        raise AssertionError("looked up a dataset online")

    monkeypatch.setattr(datasets, "load_dataset_builder", no_lookup)
    check_hub_data(_suite(folder, ["hub_mc"]))  # online the hub serves it: nothing to check here


def test_tasks_that_build_their_own_data_are_not_looked_up(offline, monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset_builder", lambda *a, **k: pytest.fail("tiny tasks read local files"))
    check_hub_data(load_suite("tiny"))


def test_eval_cli_says_it_before_the_model_loads(folder, offline, tmp_path, monkeypatch, capsys):
    import glu_ray.cli.eval as cli_eval

    monkeypatch.setattr(cli_eval, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    rc = main(["eval", "--model", str(tmp_path), "--tasks-dir", str(folder), "--tasks", "pf_group",
               "--out", str(tmp_path / "out.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and NEVER_CACHED in err[0] and "internal error" not in err[0]


def test_sweep_says_it_before_ray_starts(folder, offline, tmp_path, tiny_model_dir, monkeypatch):
    import glu_ray.sweep.driver as driver
    from glu_ray.pruning.widths import TargetWidth
    from glu_ray.trials.config import EvalSpec
    from glu_ray.sweep.grid import ModelSpec, SweepGrid

    monkeypatch.setattr(driver, "_init_ray", lambda opts: pytest.fail("Ray started"))
    text = tmp_path / "ppl.txt"
    text.write_text("Once upon a time there was a fish.\n")
    grid = SweepGrid(models=(ModelSpec(str(tiny_model_dir), "base"),), metrics=("maw",),
                     targets=(TargetWidth(pruning_pct=50),),
                     eval=EvalSpec(suite="base", tasks=("pf_tag",), tasks_dir=str(folder), ppl_text=str(text)))
    with pytest.raises(GluRayError, match=f"{NEVER_CACHED} for hub_mc"):
        driver.run_sweep(grid, driver.SweepOptions(name="pf", storage=str(tmp_path / "runs"), verbose=0))
    assert not (tmp_path / "runs" / "pf").exists()  # nothing written: no lock, no ledger, no MLflow store


def test_a_trial_that_meets_it_anyway_fails_with_one_line(folder, offline):
    """Inside a trial (no preflight there: the driver ran it), lm-eval's ConnectionError is one line."""
    from conftest import make_tiny_llama, make_tiny_tokenizer

    from glu_ray.evaluation.harness import run_suite

    tok = make_tiny_tokenizer()[0]
    with pytest.raises(GluRayError, match=f"not reachable: .*{NEVER_CACHED}") as err:
        run_suite(make_tiny_llama(vocab_size=len(tok)), tok, _suite(folder, ["hub_mc"]), limit=2, batch_size=1)
    assert "\n" not in str(err.value)
