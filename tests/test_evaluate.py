"""lm-eval evaluation of in-memory models: the tiny suite end to end, flat metric names, bad input."""

from __future__ import annotations

import json
import re

import pytest
import torch

from conftest import make_tiny_llama, make_tiny_tokenizer
from glu_ray.errors import GluRayError
from glu_ray.evaluation.harness import check_tokenizer, context_length, flatten, run_suite
from glu_ray.evaluation.suites import load_suite

MLFLOW_KEY = re.compile(r"^[A-Za-z0-9_\-./ ]+$")


@pytest.fixture(scope="module")
def tiny():
    tok, vocab = make_tiny_tokenizer()
    model = make_tiny_llama(seed=1, vocab_size=vocab, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id)
    return model, tok


def test_flatten_makes_mlflow_safe_names_and_reads_groups():
    suite = load_suite("base", tasks=["mmlu", "gsm8k_cot"])
    out = {"results": {"gsm8k_cot": {"alias": "gsm8k_cot", "exact_match,strict-match": 0.25,
                                     "exact_match_stderr,strict-match": 0.01,
                                     "exact_match,flexible-extract": 0.3, "exact_match_stderr,flexible-extract": "N/A"}},
           "groups": {"mmlu": {"acc,none": 0.4, "acc_stderr,none": 0.004, "alias": "mmlu"}}}
    metrics = flatten(suite.benchmarks, out)
    assert metrics == {"mmlu/acc": 0.4, "mmlu/acc_stderr": 0.004, "gsm8k_cot/exact_match.strict-match": 0.25,
                       "gsm8k_cot/exact_match_stderr.strict-match": 0.01, "gsm8k_cot/exact_match.flexible-extract": 0.3}
    with pytest.raises(GluRayError, match="reported no acc"):
        flatten(suite.benchmarks, {"results": {"gsm8k_cot": out["results"]["gsm8k_cot"]}})


def test_bad_input_fails_before_any_work(tiny):
    model, tok = tiny
    with pytest.raises(GluRayError, match="tokenizer"):
        run_suite(model, None, load_suite("tiny"))
    with pytest.raises(GluRayError, match="chat template"):
        check_tokenizer(tok, load_suite("instruct"))
    assert context_length(model, 4096) == model.config.max_position_embeddings
    assert context_length(model, 64) == 64


def _check(result, suite, stage=None):
    benches = suite.benchmarks if stage is None else suite.stage(stage)
    for b in benches:
        assert b.key in result.metrics, (b.key, sorted(result.metrics))
    assert all(MLFLOW_KEY.match(k) and "," not in k for k in result.metrics)
    assert all(isinstance(v, float) for v in result.metrics.values())
    json.dumps(result.raw)  # artifacts must serialise


@pytest.mark.slow
def test_tiny_suite_end_to_end_on_a_tiny_and_a_pruned_llama(tiny):
    from glu_ray.pruning.prune import prune, rank
    from glu_ray.pruning.widths import TargetWidth, resolve_width

    model, tok = tiny
    suite = load_suite("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_suite(model, tok, suite, batch_size=4)
    _check(result, suite)
    assert result.metrics["tiny_wikitext/word_perplexity"] > 1.0 and result.seconds > 0
    assert set(result.raw["results"]) >= {b.task for b in suite.benchmarks}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # scored, not changed
    _check_items(result, suite)

    pruned = make_tiny_llama(seed=1, vocab_size=model.config.vocab_size, bos_token_id=tok.bos_token_id,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = pruned.config
    prune(pruned, rank(pruned, "maw"), resolve_width(TargetWidth(50.0, None, None, None),
                                                     cfg.intermediate_size, cfg.hidden_size))
    cheap = run_suite(pruned, tok, suite, stage="cheap", limit=4)
    _check(cheap, suite, "cheap")
    assert not any(k.startswith("tiny_wikitext") for k in cheap.metrics)
    assert {k: len(v) for k, v in cheap.items.items()} == {"tiny_mc": 4, "tiny_lambada": 4}  # the limit's items
    assert set(cheap.items["tiny_mc"]) <= set(result.items["tiny_mc"])  # the same items: pairable


def _check_items(result, suite):
    """Every benchmark whose primary metric is a mean over items has its item scores, and they
    average to lm-eval's own number; perplexities (not a mean) have none."""
    means = {b.name for b in suite.benchmarks if b.metric != "word_perplexity"}
    assert set(result.items) == means
    for bench in suite.benchmarks:
        if bench.name in means:
            scores = result.items[bench.name]
            assert len(scores) == result.raw["n-samples"][bench.task]["effective"]
            assert sum(scores.values()) / len(scores) == pytest.approx(result.metrics[bench.key])
            assert all(key.startswith(f"{bench.task}/") for key in scores)


@pytest.mark.slow
def test_stories260k_suite_is_deterministic(stories_dir):
    from glu_ray.models.loading import load_model

    model, tok = load_model(str(stories_dir), device="cpu")
    suite = load_suite("tiny", tasks=["tiny_gsm8k"])
    first, second = (run_suite(model, tok, suite, limit=2) for _ in range(2))
    assert first.metrics == second.metrics


@pytest.mark.slow
def test_cli_eval_writes_every_tiny_metric(tiny_model_dir, tmp_path, capsys):
    from glu_ray.cli.main import main

    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", "tiny", "--limit", "3", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    suite = load_suite("tiny")
    assert all(b.key in written["metrics"] for b in suite.benchmarks)
    assert "tiny_wikitext" in capsys.readouterr().out


def test_cli_eval_rejects_bad_input_before_loading(tmp_path, capsys):
    from glu_ray.cli.main import main

    missing_model = str(tmp_path / "no-model")
    assert main(["eval", "--model", missing_model, "--suite", "nope", "--out", str(tmp_path / "r.json")]) == 2
    assert "valid suites" in capsys.readouterr().err
    assert main(["eval", "--model", missing_model, "--suite", "tiny", "--tasks", "tiny_mc,zzz",
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "unknown task 'zzz'" in capsys.readouterr().err
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "t.yaml").write_text("task: [oops\n")
    assert main(["eval", "--model", missing_model, "--suite", "tiny", "--tasks-dir", str(tmp_path / "tasks"),
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "does not parse" in capsys.readouterr().err


def test_cli_eval_rejects_a_model_without_tokenizer(tmp_path, capsys):
    from glu_ray.cli.main import main

    make_tiny_llama().save_pretrained(tmp_path / "bare")
    assert main(["eval", "--model", str(tmp_path / "bare"), "--suite", "tiny", "--tasks", "tiny_mc",
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "tokenizer" in capsys.readouterr().err


@pytest.mark.slow
def test_lm_eval_cli_output_with_its_samples_pairs_items_in_the_report(tiny_model_dir, tmp_path):
    """lm-eval's own CLI (--log_samples) on a model and its pruned copy: from_lm_eval reads each
    benchmark's item scores from the samples files, and the fragility interval pairs over them."""
    import subprocess
    import sys

    from analysis import from_lm_eval
    from analysis import fragility as F
    from glu_ray.cli.main import main

    pruned = tmp_path / "pruned"
    assert main(["prune", "--model", str(tiny_model_dir), "--metric", "maw", "--pruning-pct", "50",
                 "--device", "cpu", "--out", str(pruned)]) == 0
    tasks = load_suite("tiny").tasks_dirs[0]
    for folder in (tiny_model_dir, pruned):
        subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                        f"pretrained={folder},dtype=float32", "--tasks", "tiny_mc,tiny_lambada", "--include_path",
                        tasks, "--limit", "12", "--batch_size", "4", "--device", "cpu", "--log_samples",
                        "--output_path", str(tmp_path / "out")], check=True, capture_output=True)
    df = from_lm_eval(tmp_path / "out")
    mc = df[df["benchmark"] == "tiny_mc"].set_index("method")
    assert {m: len(items) for m, items in mc["items"].items()} == {"baseline": 12, "maw": 12}
    assert all(sum(i.values()) / 12 == pytest.approx(s) for i, s in zip(mc["items"], mc["score"]))
    assert df.loc[df["benchmark"] == "tiny_lambada", "items"].map(len).tolist() == [12, 12]
    # A tiny random model sits at chance (the report would leave tiny_mc out, and its LAMBADA at 0 has
    # no retention at all): score the curve as it is
    scores = F.score_curves(F.retention(df), n_boot=50)[0].set_index("benchmark")
    assert scores["paired_items"].to_dict() == {"tiny_mc": 12}
