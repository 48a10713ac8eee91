"""The efficiency stage on CPU: forced-length decoding, answer lengths, memory, energy honesty."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import make_tiny_llama, make_tiny_tokenizer
from glu_ray import TargetWidth, prune, rank, resolve_width
from glu_ray import vocab as V
from glu_ray.efficiency import energy
from glu_ray.efficiency.answers import answer_length, encode, load_prompts, measure_answers
from glu_ray.efficiency.measure import measure_efficiency
from glu_ray.efficiency.memory import PeakMemory
from glu_ray.efficiency.spec import EfficiencySpec
from glu_ray.efficiency.speed import forced_generate, greedy_config, random_prompts
from glu_ray.errors import GluRayError

@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as in a Ray trial: on a shared 2-CPU machine more threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL = EfficiencySpec(prompt_len=8, gen_len=5, batches=(1, 3), repeats=2, answer_max_new_tokens=6, answer_prompts=3)


def _model_that_stops_at_once():
    """A tiny model whose EOS is the token it writes first: left alone it stops after one token."""
    tok, vocab = make_tiny_tokenizer()
    model = make_tiny_llama(vocab_size=vocab)
    ids = random_prompts(model, 3, 8)
    first = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                           generation_config=greedy_config(1, model, forced=False))[:, -1]
    model.generation_config.eos_token_id = model.config.eos_token_id = int(first[0])
    return model, ids[:1], tok


def test_forced_generation_produces_exactly_the_requested_tokens():
    model, ids, _ = _model_that_stops_at_once()
    free = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                          generation_config=greedy_config(20, model, forced=False))
    assert free.shape[1] - ids.shape[1] == 1  # unforced, it stops at its EOS
    for batch, n in ((1, 20), (4, 7)):
        prompt = ids.repeat(batch, 1)
        new, timing = forced_generate(model, prompt, n)
        assert new.shape == (batch, n) and timing.prefill_s > 0 and timing.decode_s > 0 and timing.decode_cpu_s > 0
        assert (new != model.config.eos_token_id).all()  # EOS, its first choice, is masked all the way
    with pytest.raises(ValueError):
        forced_generate(model, ids, 1)


def test_answer_length_stops_before_the_first_eos():
    assert answer_length([5, 6, 2, 7, 2], {2}) == (2, False)  # EOS itself not counted; the first one wins
    assert answer_length([2, 5], {2, 9}) == (0, False) and answer_length([5, 9], {2, 9}) == (1, False)
    assert answer_length([5, 6, 7], {2}) == (3, True) and answer_length([5, 6, 7], set()) == (3, True)


def test_answer_lengths_count_tokens_until_eos_and_flag_the_cap():
    """The real prompts, with an EOS the model is known to write: each length is the position of
    that token in the model's unstopped greedy answer, exactly, and only answers without it are capped."""
    tok, vocab = make_tiny_tokenizer()
    model = make_tiny_llama(vocab_size=vocab)
    prompts = load_prompts()
    assert len(prompts) >= 5
    cap = 9
    model.generation_config.eos_token_id = model.config.eos_token_id = None  # nothing can stop it
    free = []
    for prompt in prompts[:3]:
        ids = torch.tensor([encode(tok, prompt, chat=False)])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             generation_config=greedy_config(cap, model, forced=False))
        free.append(out[0, ids.shape[1]:].tolist())
    capped = measure_answers(model, tok, prompts[:2], max_new_tokens=4)
    assert capped.lengths == (4, 4) and capped.capped_frac == 1.0 and capped.latency_s > 0
    # EOS := the first token of the first answer that it had not written before: that answer stops there.
    stop_at = next(i for i in range(1, cap) if free[0][i] not in free[0][:i])
    eos = free[0][stop_at]
    model.generation_config.eos_token_id = model.config.eos_token_id = eos
    res = measure_answers(model, tok, prompts[:3], max_new_tokens=cap)
    expected = tuple(f.index(eos) if eos in f else cap for f in free)
    assert res.lengths == expected and res.lengths[0] == stop_at and 0 < stop_at < cap
    assert res.capped == tuple(eos not in f for f in free) and not res.capped[0]


def test_the_stage_runs_on_cpu_and_reports_vocab_keys(monkeypatch, tmp_path):
    monkeypatch.setattr(energy, "RAPL_GLOB", str(tmp_path / "intel-rapl:[0-9]*"))  # a machine without RAPL
    tok, vocab = make_tiny_tokenizer()
    model = make_tiny_llama(vocab_size=vocab, intermediate_size=80)
    dense = measure_efficiency(model, tok, SMALL)
    cfg = model.config
    prune(model, rank(model, "maw"), resolve_width(TargetWidth(pruning_pct=50), cfg.intermediate_size, cfg.hidden_size))
    pruned = measure_efficiency(model, tok, SMALL)
    m = pruned.metrics()
    key = V.efficiency_key
    assert m[key(V.PARAMS_MLP)] == dense.metrics()[key(V.PARAMS_MLP)] / 2
    assert m[key(V.WEIGHTS_MB)] < dense.metrics()[key(V.WEIGHTS_MB)]
    for b in SMALL.batches:
        assert m[key(V.DECODE_TOK_S, b)] > 0 and m[key(V.PREFILL_TOK_S, b)] > 0
        assert m[key(V.DECODE_TOK_S + V.SPREAD, b)] >= 0
        assert m[key(V.DECODE_CPU_TOK_S, b)] > 0  # a CPU device: tokens per CPU second too
        assert m[key(V.PEAK_MEM_MB, b)] > 0  # peak RSS, reset through /proc/self/clear_refs
        # No counter: energy is absent and says why, never 0.
        assert key(V.ENERGY_J, b) not in m and key(V.ENERGY_J_PER_TOK, b) not in m
    for t in pruned.throughput:
        assert t.energy.status == energy.UNAVAILABLE and t.energy.joules is None and t.energy_j_per_tok is None
        assert "powercap" in t.energy.reason and t.decode_tok_s.n == SMALL.repeats
    assert 0 <= m[key(V.ANSWER_TOKENS)] <= SMALL.answer_max_new_tokens and len(pruned.answers.lengths) == 3
    assert all(V.safe(k) == k and isinstance(v, float) and math.isfinite(v) for k, v in m.items())
    record = pruned.to_dict()
    assert record["throughput"][0]["energy"]["status"] == "unavailable"
    assert record["throughput"][1]["generated_tokens"] == 3 * SMALL.gen_len * SMALL.repeats


def test_rapl_counter_is_read_across_a_wrap(monkeypatch, tmp_path):
    # The powercap file layout, in a temp folder (no host here exposes RAPL): the arithmetic, not a fake result.
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "max_energy_range_uj").write_text("1000000\n")
    (zone / "energy_uj").write_text("999000\n")
    monkeypatch.setattr(energy, "RAPL_GLOB", str(tmp_path / "intel-rapl:[0-9]*"))
    meter = energy.open_meter(torch.device("cpu"))
    assert isinstance(meter, energy.RaplMeter)
    start = meter.read()
    (zone / "energy_uj").write_text("4000\n")  # wrapped: 1000 + 4000 uJ later
    reading = meter.reading(start, 0.5)
    assert reading.available and reading.joules == pytest.approx(0.005) and reading.watts == pytest.approx(0.01)


def test_peak_memory_on_cpu_sees_an_allocation():
    with PeakMemory(torch.device("cpu")) as peak:
        block = torch.ones(16 * 2**20 // 4)  # 16 MiB, touched
        del block
    r = peak.reading
    assert r.available and r.method == "cpu_peak_rss" and r.delta_mb >= 15


def test_bad_efficiency_specs_are_one_line_errors():
    for bad in (dict(gen_len=1), dict(batches=()), dict(batches=(0,)), dict(repeats=0), dict(answer_max_new_tokens=-1),
                dict(answer_prompts=0)):
        with pytest.raises(GluRayError):
            EfficiencySpec(**bad)
    assert EfficiencySpec.from_dict({**EfficiencySpec().__dict__, "batches": [1, 8]}).batches == (1, 8)
    spec = EfficiencySpec().with_overrides("gen_len=16, batches=1/4, answer_prompts=3")
    assert (spec.gen_len, spec.batches, spec.answer_prompts, spec.repeats) == (16, (1, 4), 3, EfficiencySpec().repeats)
    for bad in ("gen_len", "speed=3", "repeats=many", "gen_len=1"):
        with pytest.raises(GluRayError):
            EfficiencySpec().with_overrides(bad)
