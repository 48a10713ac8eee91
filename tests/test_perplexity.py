"""Fast perplexity equals lm-eval's wikitext word/byte perplexity on the same documents."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_llama, make_tiny_tokenizer, shared_asset
from glu_ray.errors import GluRayError
from glu_ray.evaluation.perplexity import fast_perplexity, lm_eval_perplexity, load_documents, split_documents

TEXT = """ = First Article = 
 Lily had a red kite . She flew it in the park , and it went up high @-@ very high .
 = = A Section = = 
 Then the wind stopped . " Oh no ! " said Lily .
 = Second Article = 
 Tom found 3 @,@ 000 shiny stones by the river ; he took one home .
"""


@pytest.fixture(scope="module")
def tiny():
    tok, vocab = make_tiny_tokenizer()
    model = make_tiny_llama(seed=3, vocab_size=vocab, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return model, tok


def test_split_documents_on_article_headings_or_blank_lines():
    docs = split_documents(TEXT)
    assert len(docs) == 2 and docs[0].startswith(" = First Article = ") and "A Section" in docs[0]
    assert split_documents("one story.\n\n\ntwo story.\nsame story.\n") == ["one story.", "two story.\nsame story."]


def test_load_documents_errors(tmp_path):
    with pytest.raises(GluRayError, match="neither 'wikitext' nor a readable file"):
        load_documents(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(GluRayError, match="holds no text"):
        load_documents(str(tmp_path / "empty.txt"))
    with pytest.raises(GluRayError, match="not reachable"):  # tests run with HF_DATASETS_OFFLINE=1
        load_documents("wikitext")


@pytest.mark.parametrize("max_length,batch_size", [(16, 1), (16, 8), (64, 3), (256, 8)])
def test_matches_lm_eval_on_a_tiny_model_and_a_local_file(tiny, tmp_path, max_length, batch_size):
    model, tok = tiny
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    docs = load_documents(str(path))
    ours = fast_perplexity(model, tok, docs, max_length=max_length, batch_size=batch_size)
    ref = lm_eval_perplexity(model, tok, docs, max_length=max_length, batch_size=batch_size)
    assert ours.word_perplexity == pytest.approx(ref.word_perplexity, rel=1e-3)
    assert ours.byte_perplexity == pytest.approx(ref.byte_perplexity, rel=1e-3)
    assert ours.bits_per_byte == pytest.approx(ref.bits_per_byte, rel=1e-3)
    assert ours.documents == 2 and ours.tokens == ref.tokens  # every token scored exactly once


def test_leaves_the_model_and_tokenizer_as_they_were(tiny):
    model, tok = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pad = tok.pad_token
    fast_perplexity(model, tok, ["a b c"], max_length=8)
    lm_eval_perplexity(model, tok, ["a b c"], max_length=8)
    assert tok.pad_token == pad and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(GluRayError, match="tokenizer"):
        fast_perplexity(model, None, ["a"], max_length=8)
    with pytest.raises(GluRayError, match="at least one document"):
        fast_perplexity(model, tok, [], max_length=8)


@pytest.mark.parametrize("source,count,max_length", [("tinystories_valid_head.txt", 60, 512),
                                                     ("wikitext2_raw_test.txt", 1, 128)])
def test_matches_lm_eval_on_stories260k(stories_dir, source, count, max_length):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    docs = load_documents(str(shared_asset("text", source)))[:count]
    model = AutoModelForCausalLM.from_pretrained(stories_dir).eval()
    tok = AutoTokenizer.from_pretrained(stories_dir)
    ours = fast_perplexity(model, tok, docs, max_length=max_length)
    ref = lm_eval_perplexity(model, tok, docs, max_length=max_length)
    assert ours.word_perplexity == pytest.approx(ref.word_perplexity, rel=1e-3)
    assert ours.byte_perplexity == pytest.approx(ref.byte_perplexity, rel=1e-3)
