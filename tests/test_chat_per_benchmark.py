"""A suite can send some benchmarks through the chat template and score the rest plainly, in one run:
the prompts are exactly lm-eval's own for each setting (captured where HFLM answers each request)."""

from __future__ import annotations

import pytest

from glu_ray.errors import GluRayError
from glu_ray.evaluation.harness import run_suite, task_manager
from glu_ray.evaluation.suites import load_suite

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture
def mixed_suite(tmp_path):
    path = tmp_path / "tiny_mixed.yaml"
    path.write_text("name: tiny_mixed\nextends: tiny\napply_chat_template: false\ndrop: [tiny_ifeval]\nbenchmarks:\n"
                    "  - {name: tiny_ifeval, task: tiny_ifeval, num_fewshot: 0, metric: prompt_level_strict_acc, "
                    "higher_is_better: true, chance: 0.0, capability: instruction following, stage: full, "
                    "chat_template: true}\n")
    return load_suite(str(path), tasks=["tiny_mc", "tiny_ifeval"])


@pytest.fixture
def chat_model(tiny_model_dir):
    from glu_ray.models.loading import load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    tok.chat_template = CHAT
    return model, tok


def _requests(monkeypatch):
    """Every (request kind, request) HFLM answers, in order: its cache hook sees each one."""
    from lm_eval.api.model import CacheHook

    seen = []
    monkeypatch.setattr(CacheHook, "add_partial", lambda self, attr, req, res: seen.append((attr, repr(req))))
    return seen


def _lm_eval_alone(model, tok, suite, task: str, chat: bool):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=2, max_length=suite.max_length)
    return simple_evaluate(model=lm, tasks=[task], num_fewshot=0, limit=2, task_manager=task_manager(suite.tasks_dirs),
                           apply_chat_template=chat, fewshot_as_multiturn=chat, log_samples=False,
                           gen_kwargs={"max_gen_toks": 8}, bootstrap_iters=0,
                           random_seed=1234, numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234)


def test_each_benchmark_gets_lm_evals_own_prompts_for_its_setting(mixed_suite, chat_model, monkeypatch):
    model, tok = chat_model
    assert mixed_suite.chat_benchmarks == ("tiny_ifeval",)
    seen = _requests(monkeypatch)
    run_suite(model, tok, mixed_suite, limit=2, batch_size=2, gen_kwargs={"max_gen_toks": 8}, bootstrap_iters=0)
    ours = sorted(seen)

    expected = {}
    for task, chat in (("tiny_mc", False), ("tiny_mc", True), ("tiny_ifeval", True), ("tiny_ifeval", False)):
        seen.clear()
        _lm_eval_alone(model, tok, mixed_suite, task, chat)
        expected[task, chat] = sorted(seen)
    assert ours == sorted(expected["tiny_mc", False] + expected["tiny_ifeval", True])
    # ... and the settings are told apart: the other choice gives other prompts for both tasks
    assert expected["tiny_mc", True] != expected["tiny_mc", False]
    assert expected["tiny_ifeval", False] != expected["tiny_ifeval", True]
    assert any("<|user|>" in req for _, req in expected["tiny_ifeval", True])


def test_a_chat_benchmark_needs_a_tokenizer_with_a_template(mixed_suite, tiny_model_dir):
    from glu_ray.models.loading import load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert not getattr(tok, "chat_template", None)
    with pytest.raises(GluRayError, match="prompts tiny_ifeval through a chat template but the tokenizer has none"):
        run_suite(model, tok, mixed_suite, limit=1)
    run_suite(model, tok, mixed_suite, stage="cheap", limit=1)  # the plain tasks alone need no template


def test_the_instruct_mixed_suite_scores_loglikelihood_plainly_and_ifeval_through_the_template():
    mixed, instruct = load_suite("instruct_mixed"), load_suite("instruct")
    assert mixed.names == tuple(n for n in instruct.names if n != "ifeval") + ("ifeval",)
    assert mixed.chat_benchmarks == ("ifeval",) and instruct.chat_benchmarks == instruct.names
