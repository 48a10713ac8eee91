"""Progress inside a trial: a line every ~20 s of a long stage, with counts that add up to the work."""

from __future__ import annotations

import threading

import pytest

from glu_ray.evaluation.meter import Meter


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_give_counts_then_a_rate_and_an_eta():
    clock = Clock()
    meter = Meter(lambda line: None, every=3600, clock=clock)
    with meter.phase("stage 0 perplexity", 1000, "tokens"):
        clock.now += 5
        assert meter.line() == "stage 0 perplexity: 0/1,000 tokens (0%), 5s in"  # no rate yet: no ETA
        meter.add(250)
        assert meter.line() == "stage 0 perplexity: 250/1,000 tokens (25%), 50 tokens/s, ETA 15s"
        clock.now += 95
        meter.add(250)
        assert meter.line() == "stage 0 perplexity: 500/1,000 tokens (50%), 5 tokens/s, ETA 1m40s"


def test_a_line_comes_on_time_even_while_one_batch_runs_long():
    lines, got = [], threading.Event()
    meter = Meter(lambda line: (lines.append(line), got.set()), every=0.05)
    with meter.phase("piqa loglikelihood", 10, "requests"):
        meter.add(3)
        assert got.wait(5)  # no add() is needed for a line: the timer sends it
    count = len(lines)
    assert lines[0].startswith("piqa loglikelihood: 3/10 requests (30%), ")
    threading.Event().wait(0.2)
    assert len(lines) == count  # the phase is over: silent


def test_a_short_phase_prints_nothing():
    lines = []
    with Meter(lines.append, every=30).phase("x", 5, "tokens") as meter:
        meter.add(5)
    assert lines == []


def test_stage0_counts_every_scored_token():
    from conftest import make_tiny_llama, make_tiny_tokenizer
    from glu_ray.evaluation.perplexity import fast_perplexity

    tok, vocab = make_tiny_tokenizer()
    tiny_llama = make_tiny_llama(vocab_size=vocab)
    meter = Meter(lambda line: None, every=3600)
    docs = ["One day a fox found a key. " * 20, "The end of the story came soon. " * 9]
    result = fast_perplexity(tiny_llama, tok, docs, max_length=64, batch_size=2, meter=meter)
    assert meter.done == meter.total == result.tokens > 0


@pytest.mark.slow
def test_lm_eval_requests_are_counted_to_their_total(tiny_model_dir):
    from glu_ray.evaluation.harness import run_suite
    from glu_ray.evaluation.suites import load_suite
    from glu_ray.models.loading import load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    phases = []

    class Recording(Meter):
        def phase(self, what, total, unit):
            phases.append((what, total, unit))
            return super().phase(what, total, unit)

    meter = Recording(lambda line: None, every=3600)
    suite = load_suite("tiny", tasks=["tiny_mc", "tiny_gsm8k"])
    plain = run_suite(model, tok, suite, limit=3, batch_size=2)
    metered = run_suite(model, tok, suite, limit=3, batch_size=2, meter=meter)
    assert metered.metrics == plain.metrics  # counting changes no score
    # tiny_mc: 3 items x 4 choices; tiny_gsm8k (2-shot, its own call): 3 generations
    assert phases == [("tiny_mc loglikelihood", 12, "requests"), ("tiny_gsm8k generation", 3, "requests")]
    assert meter.done == 3  # the last phase's count reached its total
