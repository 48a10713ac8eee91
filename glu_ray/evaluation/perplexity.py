"""Fast rolling-window perplexity with lm-eval's ``wikitext`` semantics: stage 0 of every trial.

Same numbers as ``lm_eval`` (task ``wikitext``, HFLM ``loglikelihood_rolling``) on the same documents:
each document is detokenized with lm-eval's WikiText detokenizer, encoded as HFLM encodes it (the
tokenizer's special tokens, so Llama gets a BOS), cut into lm-eval's own rolling windows
(``get_rolling_token_windows`` + ``make_disjoint_window``, prefix token = BOS, else EOS) for the
chosen ``max_length``, and normalised by the words and UTF-8 bytes of the *original* document.
What differs is only the batching: windows of all documents are sorted by length and packed into
batches under one token budget, scored with a fused cross-entropy instead of a full log-softmax plus
per-window Python, and nothing else (no task index, no dataset machinery) runs around it.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.api.metrics import bits_per_byte, weighted_perplexity
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from glu_ray.errors import GluRayError, first_line
from glu_ray.evaluation.meter import Meter, maybe_phase
from glu_ray.text import encode, prefix_token_id, split_documents

# lm-eval's wikitext task scores `EleutherAI/wikitext_document_level`, config `wikitext-2-raw-v1`, test split.
WIKITEXT = ("EleutherAI/wikitext_document_level", "wikitext-2-raw-v1", "test")


@dataclass(frozen=True)
class PerplexityResult:
    word_perplexity: float
    byte_perplexity: float
    bits_per_byte: float
    tokens: int  # scored tokens
    documents: int
    seconds: float


@dataclass(frozen=True)
class Window:
    doc: int  # index of the document it belongs to
    inp: list[int]  # model input, at most max_length tokens
    n_scored: int  # the last n_scored positions of inp predict the window's continuation tokens
    labels: list[int]  # [n_scored] the continuation tokens


def load_documents(source: str | None = None) -> list[str]:
    """Documents to score: lm-eval's WikiText-2 test pages (None / "wikitext") or a local text file.

    A file is split into WikiText articles when it has ` = Title = ` heading lines, else on blank lines.
    """
    if source in (None, "wikitext"):
        return _wikitext_pages()
    path = Path(source).expanduser()
    if not path.is_file():
        raise GluRayError(f"text source {source!r} is neither 'wikitext' nor a readable file")
    docs = split_documents(path.read_text(encoding="utf-8"))
    if not docs:
        raise GluRayError(f"{source} holds no text")
    return docs


def _wikitext_pages() -> list[str]:
    import datasets  # lazy: datasets costs ~1.5 s at import (python -X importtime, shared CPU)

    path, name, split = WIKITEXT
    try:
        return list(datasets.load_dataset(path, name, split=split)["page"])
    except Exception as err:  # noqa: BLE001 - offline, no cache, hub errors: all mean "not reachable here"
        raise GluRayError(f"lm-eval's wikitext dataset is not reachable ({first_line(err)}); pass a local text file") from None


def windows(tokens: list[int], prefix: int, max_length: int, doc: int) -> list[Window]:
    """lm-eval's rolling windows for one document, as HFLM._loglikelihood_tokens would feed them."""
    out = []
    for ctx, cont in map(make_disjoint_window, get_rolling_token_windows(tokens, prefix, max_length, 1)):
        full = (ctx + cont)[-(max_length + 1):]  # HFLM truncates from the left, then drops the last token
        out.append(Window(doc, full[:-1], len(cont), cont))
    return out


def _batches(wins: list[Window], token_budget: int) -> list[list[Window]]:
    """Longest first, so each batch pads to a length close to its members; size bounded by tokens."""
    ordered = sorted(wins, key=lambda w: -len(w.inp))
    batches, current = [], []
    for w in ordered:
        width = len(current[0].inp) if current else len(w.inp)
        if current and (len(current) + 1) * width > token_budget:
            batches.append(current)
            current = []
        current.append(w)
    return batches + ([current] if current else [])


@torch.inference_mode()
def _score(model, batch: list[Window], pad_id: int) -> list[float]:
    """Sum of continuation log-probs per window (float64 totals)."""
    device = next(model.parameters()).device
    width = len(batch[0].inp)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # [B, T], right-padded
    labels = torch.full((len(batch), width), -100, dtype=torch.long)  # [B, T], -100 = not scored
    for row, w in enumerate(batch):
        ids[row, : len(w.inp)] = torch.tensor(w.inp)
        labels[row, len(w.inp) - w.n_scored : len(w.inp)] = torch.tensor(w.labels)
    # No attention mask, as in lm-eval: padding sits to the right, so causal attention never sees it.
    logits = model(input_ids=ids.to(device), use_cache=False).logits  # [B, T, V]
    labels = labels.to(device)
    totals = []
    for row in range(len(batch)):  # one row at a time keeps the float32 copy of the logits small
        nll = F.cross_entropy(logits[row].float(), labels[row], ignore_index=-100, reduction="sum")
        totals.append(-float(nll))
    return totals


def fast_perplexity(model, tokenizer, documents: Sequence[str], *, max_length: int,
                    batch_size: int = 8, meter: Meter | None = None) -> PerplexityResult:
    """lm-eval wikitext word/byte perplexity of ``documents`` (raw pages), batched over all windows.

    ``batch_size`` sets the token budget (batch_size * max_length tokens per forward), so memory
    matches an lm-eval run with the same batch size while short windows share a batch. A ``meter``
    counts the scored tokens (progress lines on a long stage).
    """
    from lm_eval.tasks.wikitext.preprocess_wikitext import (
        wikitext_detokenizer,  # lazy: lm_eval.tasks costs ~0.9 s at import (python -X importtime, shared CPU)
    )

    if tokenizer is None:
        raise GluRayError("fast_perplexity needs the model's tokenizer, got None")
    if not documents:
        raise GluRayError("fast_perplexity needs at least one document")
    started = time.perf_counter()
    prefix = prefix_token_id(tokenizer)
    wins = [w for i, doc in enumerate(documents)
            for w in windows(encode(tokenizer, wikitext_detokenizer({"page": doc})), prefix, max_length, i)]
    loglik = [0.0] * len(documents)
    with maybe_phase(meter, "stage 0 perplexity", sum(w.n_scored for w in wins), "tokens"):
        for batch in _batches(wins, batch_size * max_length):
            for w, ll in zip(batch, _score(model, batch, pad_id=prefix)):
                loglik[w.doc] += ll
            if meter is not None:
                meter.add(sum(w.n_scored for w in batch))
    total = math.fsum(loglik)
    # lm-eval counts words and bytes on the page *before* detokenization (see its process_results).
    words = sum(len(re.split(r"\s+", doc)) for doc in documents)
    n_bytes = sum(len(doc.encode("utf-8")) for doc in documents)
    return PerplexityResult(
        word_perplexity=math.exp(-total / words),
        byte_perplexity=math.exp(-total / n_bytes),
        bits_per_byte=-total / n_bytes / math.log(2),
        tokens=sum(w.n_scored for w in wins),
        documents=len(documents),
        seconds=time.perf_counter() - started,
    )


def lm_eval_perplexity(model, tokenizer, documents: Sequence[str], *, max_length: int,
                       batch_size: int = 8) -> PerplexityResult:
    """The reference: lm-eval's own HFLM.loglikelihood_rolling, process_results and aggregations.

    What lm-eval's ``wikitext`` task computes on ``documents``, without its dataset download;
    fast_perplexity must agree with it (tests and bench/ppl_speed.py check that).
    """
    from lm_eval.models.huggingface import HFLM  # lazy: HFLM costs ~4 s at import (python -X importtime, shared CPU)
    from lm_eval.tasks.wikitext.preprocess_wikitext import (  # lazy: lm_eval.tasks costs ~0.9 s at import (python -X importtime, shared CPU)
        process_results,
        wikitext_detokenizer,
    )

    started = time.perf_counter()
    pad_token = tokenizer.pad_token
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)
    try:
        docs = [{"page": d} for d in documents]
        requests = [Instance("loglikelihood_rolling", doc, (wikitext_detokenizer(doc),), i) for i, doc in enumerate(docs)]
        loglik = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    finally:
        tokenizer.pad_token = pad_token
        del lm
    scored = [process_results(doc, [ll]) for doc, ll in zip(docs, loglik)]
    return PerplexityResult(
        word_perplexity=weighted_perplexity([s["word_perplexity"] for s in scored]),
        byte_perplexity=weighted_perplexity([s["byte_perplexity"] for s in scored]),
        bits_per_byte=bits_per_byte([s["bits_per_byte"] for s in scored]),
        tokens=sum(len(encode(tokenizer, r.args[0])) for r in requests),
        documents=len(documents),
        seconds=time.perf_counter() - started,
    )
