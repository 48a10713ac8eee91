"""Healing (glu_ray.recovery): KD lowers the loss, is deterministic under a seed, and a healed
model (KD or merged LoRA) saves and reloads with stock from_pretrained to identical logits."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import make_tiny_llama, make_tiny_tokenizer
from glu_ray import GluRayError, TargetWidth, prune, rank, resolve_width
from glu_ray.models.tiny import tiny_corpus, train
from glu_ray.pruning.calibration import CalibrationSpec
from glu_ray.recovery import RecoverySpec, batch_order, heal, healing_tokens, kd_loss, kd_loss_on, save_healed


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny matmuls: a second thread only adds contention (60 training steps take 2 s on one
    # thread, and 100 s on two when the machine's cores are busy).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("heal") / "heal.txt"
    path.write_text(tiny_corpus(400, seed=3))
    return path


@pytest.fixture(scope="module")
def trained():
    """A tiny Llama trained briefly: a random-init model's outputs are near uniform, so pruning
    it costs almost nothing and there would be nothing to heal."""
    tok, vocab = make_tiny_tokenizer()
    model = make_tiny_llama(0, vocab_size=vocab, intermediate_size=64)
    with torch.random.fork_rng():
        train(model, tok, tiny_corpus(600, seed=1), steps=60, seq_len=48, batch=8, lr=1e-2)
    return model, tok


def _pair(trained):
    """(teacher, pruned student copy, tokenizer): the trained tiny Llama and a copy at 50% MAW."""
    model, tok = trained
    teacher = copy.deepcopy(model)
    student = copy.deepcopy(model)
    cfg = student.config
    prune(student, rank(student, "maw"), resolve_width(TargetWidth(pruning_pct=50), cfg.intermediate_size, cfg.hidden_size))
    return teacher, student, tok


def _spec(text, **kw) -> RecoverySpec:
    return RecoverySpec(**{"steps": 8, "batch_size": 2, "data": CalibrationSpec(str(text), seq_len=32), **kw})


@pytest.mark.parametrize("method", ["kd", "lora"])
def test_healing_lowers_the_kd_loss_on_a_fixed_batch(trained, text, method):
    teacher, student, tok = _pair(trained)
    spec = _spec(text, method=method, lr=3e-3, steps=12, lora_rank=2)
    tokens = healing_tokens(spec, tok)
    assert tokens.shape == (spec.steps * spec.batch_size, 32)
    fixed = tokens[:4]
    before = kd_loss_on(student, teacher, fixed)
    healed, result = heal(student, teacher, tokens, spec)
    after = kd_loss_on(healed, teacher, fixed)
    assert after < 0.8 * before, (before, after)
    assert result.tokens == spec.steps * spec.batch_size * 32 and len(result.losses) == spec.steps
    assert result.seconds > 0 and result.trainable_params > 0
    assert not any(p.requires_grad for p in healed.parameters())
    if method == "lora":  # adapters only, merged away afterwards
        assert result.trainable_params < sum(p.numel() for p in healed.parameters()) / 4
        assert not any("lora" in name for name, _ in healed.named_modules())
    m = result.metrics()
    assert m["recover/tokens"] == result.tokens and m["recover/loss_last"] == result.losses[-1]


def test_kd_loss_is_zero_for_the_teacher_itself_and_scales_with_temperature():
    gen = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(2, 5, 11, generator=gen), torch.randn(2, 5, 11, generator=gen)
    assert kd_loss(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)

    def by_hand(p_logits, q_logits, t):  # T^2 * KL(p || q) per token, averaged over the 10 tokens
        p, q = (torch.softmax(x.double() / t, dim=-1) for x in (p_logits, q_logits))
        return t**2 * (p * (p.log() - q.log())).sum(-1).mean().item()

    for t in (1.0, 2.0):  # at T=2 the T^2 factor is 4: a loss without it is 4x too small
        assert kd_loss(student, teacher, t).item() == pytest.approx(by_hand(teacher, student, t), rel=1e-5)
    # The direction matters (teacher first) and is told apart at T=2: the reverse differs by far more than rounding.
    assert abs(by_hand(teacher, student, 2.0) - by_hand(student, teacher, 2.0)) > 1e-2


def test_same_seed_same_healing_other_seed_other_order(trained, text):
    runs = []
    for seed in (0, 0, 1):
        teacher, student, tok = _pair(trained)
        spec = _spec(text, seed=seed, lr=1e-3)
        healed, result = heal(student, teacher, healing_tokens(spec, tok), spec)
        runs.append((result.losses, [p.clone() for p in healed.parameters()]))
    (l0, w0), (l1, w1), (l2, _) = runs
    assert l0 == l1 and all(torch.equal(a, b) for a, b in zip(w0, w1))
    assert l0 != l2


def test_batch_order_is_a_seeded_permutation_per_pass():
    order = batch_order(6, steps=5, batch_size=3, seed=7)  # 15 rows: two full passes and a partial one
    assert order.shape == (5, 3)
    flat = order.flatten().tolist()
    assert sorted(flat[:6]) == list(range(6)) and sorted(flat[6:12]) == list(range(6))
    assert torch.equal(order, batch_order(6, 5, 3, seed=7)) and not torch.equal(order, batch_order(6, 5, 3, seed=8))


@pytest.mark.parametrize("method", ["kd", "lora"])
def test_healed_model_reloads_with_stock_from_pretrained_with_identical_logits(trained, text, tmp_path, method):
    from transformers import AutoModelForCausalLM

    teacher, student, tok = _pair(trained)
    spec = _spec(text, method=method, steps=3, lr=3e-3)
    healed, result = heal(student, teacher, healing_tokens(spec, tok), spec)
    out = save_healed(healed, tok, tmp_path / "healed", result)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, teacher.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, healed(input_ids=ids).logits)
    assert reloaded.config.intermediate_size == 32
    assert (out / "glu_ray_recovery.json").is_file()


def test_bad_specs_fail_with_one_clear_error(text):
    with pytest.raises(GluRayError, match="method 'sft' is not one of kd, lora"):
        RecoverySpec(method="sft")
    with pytest.raises(GluRayError, match="steps must be a positive integer"):
        RecoverySpec(steps=0)
    with pytest.raises(GluRayError, match="temperature must be > 0"):
        RecoverySpec(temperature=0)
    spec = _spec(text, steps=4000)  # 8000 sequences of 32 tokens: more than the file holds
    with pytest.raises(GluRayError, match="needed"):
        healing_tokens(spec, make_tiny_tokenizer()[0])


def test_spec_round_trips_through_a_plain_dict(text):
    spec = _spec(text, method="lora", lr=1e-4)
    assert RecoverySpec.from_dict(spec.to_dict()) == spec
    assert spec.data.n_sequences == spec.steps * spec.batch_size
    assert spec.params()["recover_tokens"] == str(spec.tokens)
