"""Calibration: deterministic token windows, one hooked pass, exact running sums, padding masked."""

from __future__ import annotations

import pytest
import torch
from conftest import SHARED, make_tiny_llama, make_tiny_tokenizer
from test_prune import one_thread  # noqa: F401  (autouse: one torch thread)

from glu_ray import GluRayError, glu_layers
from glu_ray.models.tiny import tiny_corpus
from glu_ray.pruning.calibration import (
    CalibrationSpec,
    CalibrationStats,
    calibrate,
    calibration_tokens,
    collect_stats,
    token_batches,
)

WIKITEXT_FILE = SHARED / "assets" / "text" / "wikitext2_raw_test.txt"


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "corpus.txt"
    # Blank-line separated documents: split_documents makes each paragraph one document.
    path.write_text("\n\n".join(tiny_corpus(6, seed=s) for s in range(12)))
    return path


@pytest.fixture(scope="module")
def tok():
    return make_tiny_tokenizer()[0]


@pytest.fixture(scope="module")
def model(tok):
    return make_tiny_llama(seed=1, vocab_size=len(tok))


def down_inputs(model, ids: torch.Tensor) -> list[torch.Tensor]:
    """The reference: every down_proj input [B, S, I], captured whole (tests only)."""
    seen = []
    handles = [t.down.register_forward_pre_hook(lambda m, i: seen.append(i[0].detach().clone()))
               for t in glu_layers(model)]
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_spec_checks_and_fingerprint(text_file, tmp_path):
    with pytest.raises(GluRayError, match="n_sequences"):
        CalibrationSpec(str(text_file), n_sequences=0)
    with pytest.raises(GluRayError, match="neither 'wikitext' nor a readable file"):
        CalibrationSpec(str(tmp_path / "missing.txt"))
    base = CalibrationSpec(str(text_file), n_sequences=4, seq_len=32, seed=0)
    assert base.fingerprint == CalibrationSpec(str(text_file), n_sequences=4, seq_len=32, seed=0).fingerprint
    changed = [CalibrationSpec(str(text_file), n_sequences=5, seq_len=32), CalibrationSpec(str(text_file), 4, 33),
               CalibrationSpec(str(text_file), 4, 32, seed=1), CalibrationSpec(str(text_file), 4, 32, skip_docs=1),
               CalibrationSpec("wikitext", 4, 32)]
    assert len({base.fingerprint, *(c.fingerprint for c in changed)}) == 1 + len(changed)
    # The fingerprint follows the content, not the path.
    copy = tmp_path / "copy.txt"
    copy.write_bytes(text_file.read_bytes())
    assert CalibrationSpec(str(copy), 4, 32).fingerprint == base.fingerprint
    copy.write_text(text_file.read_text() + "\n\nOne more document.")
    assert CalibrationSpec(str(copy), 4, 32).fingerprint != base.fingerprint
    assert base.params() == {"calibration": str(text_file), "calibration_sequences": 4, "calibration_seq_len": 32,
                             "calibration_seed": 0, "calibration_skip_docs": 0, "calibration_fingerprint": base.fingerprint}


def test_tokens_deterministic_given_seed(text_file, tok):
    spec = CalibrationSpec(str(text_file), n_sequences=6, seq_len=40, seed=0)
    a, b = calibration_tokens(spec, tok), calibration_tokens(spec, tok)
    assert a.shape == (6, 40) and a.dtype == torch.long
    assert torch.equal(a, b)
    other = calibration_tokens(CalibrationSpec(str(text_file), n_sequences=6, seq_len=40, seed=1), tok)
    assert not torch.equal(a, other)
    with pytest.raises(GluRayError, match="tokens;"):
        calibration_tokens(CalibrationSpec(str(text_file), n_sequences=10_000, seq_len=256), tok)


def test_skip_docs_keeps_calibration_off_the_first_documents(text_file, tok):
    from glu_ray.pruning.calibration import calibration_documents

    docs = calibration_documents(CalibrationSpec(str(text_file)))
    skipped = calibration_documents(CalibrationSpec(str(text_file), skip_docs=3))
    assert skipped == docs[3:]
    with pytest.raises(GluRayError, match="no documents"):
        calibration_documents(CalibrationSpec(str(text_file), skip_docs=len(docs)))


def test_stats_are_the_exact_running_sums(model, tok, text_file):
    spec = CalibrationSpec(str(text_file), n_sequences=6, seq_len=24)
    stats = calibrate(model, tok, spec, batch_size=4)  # two batches: 4 + 2 sequences
    ids = calibration_tokens(spec, tok)
    assert stats.fingerprint == spec.fingerprint and stats.tokens == 6 * 24
    assert stats.params["calibration_sequences"] == 6
    for layer, x in zip(stats.layers, down_inputs(model, ids), strict=True):
        flat = x.reshape(-1, x.shape[-1]).double()  # [T, I]
        assert layer.sum.dtype == torch.float64 and layer.count == flat.shape[0]
        torch.testing.assert_close(layer.sum, flat.sum(0), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(layer.sumsq, (flat * flat).sum(0), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(layer.variance, flat.var(0), rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(layer.l2, flat.norm(dim=0), rtol=1e-6, atol=1e-9)


def test_padding_is_masked(model):
    """Right-padded batch == the same sequences one at a time, unpadded; counting pads differs."""
    gen = torch.Generator().manual_seed(0)
    lengths = (20, 13, 7)
    seqs = [torch.randint(3, 100, (n,), generator=gen) for n in lengths]
    ids = torch.zeros(len(seqs), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(seqs):
        ids[row, : s.numel()] = s
        mask[row, : s.numel()] = 1
    padded = collect_stats(model, [{"input_ids": ids, "attention_mask": mask}])
    alone = collect_stats(model, [{"input_ids": s[None]} for s in seqs])
    counted = collect_stats(model, [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}])
    assert padded.tokens == alone.tokens == sum(lengths) and counted.tokens == ids.numel()
    for p, a, c in zip(padded.layers, alone.layers, counted.layers):
        torch.testing.assert_close(p.sum, a.sum, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(p.sumsq, a.sumsq, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(c.sumsq, a.sumsq, rtol=1e-3)


def test_hooks_removed_and_no_tokens_is_an_error(model):
    with pytest.raises(GluRayError, match="no tokens"):
        collect_stats(model, [])
    assert all(not t.down._forward_pre_hooks for t in glu_layers(model))
    with pytest.raises(IndexError):
        collect_stats(model, [{"input_ids": torch.tensor([[10_000]])}])  # out of vocabulary: forward fails
    assert all(not t.down._forward_pre_hooks for t in glu_layers(model))


def test_stats_save_and_load(model, tok, text_file, tmp_path):
    stats = calibrate(model, tok, CalibrationSpec(str(text_file), n_sequences=2, seq_len=16))
    stats.save(tmp_path / "s.pt")
    back = CalibrationStats.load(tmp_path / "s.pt")
    assert back.fingerprint == stats.fingerprint and back.params == stats.params and back.tokens == stats.tokens
    assert back.seconds == stats.seconds > 0
    assert all(torch.equal(a.sum, b.sum) and torch.equal(a.sumsq, b.sumsq) and a.count == b.count
               for a, b in zip(back.layers, stats.layers, strict=True))
    torch.save({"fingerprint": object()}, tmp_path / "evil.pt")  # a pickled object, not tensors
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        CalibrationStats.load(tmp_path / "evil.pt")


def test_token_batches_and_context_check(model, tok, text_file):
    tokens = torch.arange(70).reshape(7, 10)
    assert [b["input_ids"].shape[0] for b in token_batches(tokens, 3)] == [3, 3, 1]
    assert [b["input_ids"].shape[0] for b in token_batches(tokens, 1)] == [1] * 7
    with pytest.raises(GluRayError, match="batch size"):
        token_batches(tokens, 0)
    with pytest.raises(GluRayError, match="exceeds the model's context"):
        calibrate(model, tok, CalibrationSpec(str(text_file), n_sequences=1, seq_len=10_000))
    context = model.config.max_position_embeddings  # a window of exactly the model's context is fine
    assert calibrate(model, tok, CalibrationSpec(str(text_file), n_sequences=1, seq_len=context)).tokens == context


def test_wikitext_offline_is_a_clear_error():
    from glu_ray.pruning.calibration import calibration_documents

    with pytest.raises(GluRayError, match="pass a local text file"):
        calibration_documents(CalibrationSpec("wikitext"))


@pytest.mark.skipif(not WIKITEXT_FILE.is_file(), reason="../shared WikiText-2 text not present")
def test_local_wikitext_file_splits_into_articles(tok):
    from glu_ray.pruning.calibration import calibration_documents

    docs = calibration_documents(CalibrationSpec(str(WIKITEXT_FILE)))
    assert len(docs) > 50 and all(d.startswith(" = ") for d in docs)
