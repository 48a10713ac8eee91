"""Synthetic lm-eval requests shaped like real benchmarks, driven through lm-eval's HFLM.

A word-level tokenizer with one word per model token id ("w17") makes every request exactly as
long as its profile says and lets generation emit any id; no stop string ever appears in its
output, so generations run for exactly the number of tokens asked (a controlled length).
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import time
from dataclasses import dataclass, replace

from glu_ray.cost.workloads import GenMode, Workload

SPECIALS = ("<unk>", "<s>", "</s>")


def word_tokenizer(vocab_size: int):
    """A real fast tokenizer covering ids [0, vocab_size): specials, then words w3..w{V-1}."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.pad_token = fast.eos_token
    return fast


def fit_workload(w: Workload, max_length: int, gen_mode: GenMode, max_gen: int | None = None) -> Workload:
    """Shorten contexts so lm-eval never truncates (token accounting then matches the work done);
    ``max_gen`` caps generation lengths (dry runs)."""
    if w.kind == "rolling":
        return w  # split into max_length windows by lm-eval itself
    if max_gen is not None and w.kind == "generate":
        w = replace(w, max_gen_toks=min(w.max_gen_toks, max_gen), typical_gen_tokens=min(w.typical_gen_tokens, max_gen))
    room = max_length - (w.gen_tokens(gen_mode) if w.kind == "generate" else w.continuation_tokens) - 1
    return replace(w, context_tokens=max(1, min(w.context_tokens, room)))


@dataclass(frozen=True)
class BenchResult:
    task: str
    kind: str
    docs: int
    loglik_requests: int  # loglikelihood Instances (0 for rolling / generate)
    prefill_tokens: int
    gen_tokens: int  # total tokens generated
    decode_steps: int  # sequential generate steps: ceil(docs / batch) x tokens per generation
    seconds: float
    params: int
    peak_flops: float | None

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.gen_tokens

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def peak_fraction(self) -> float | None:
        """2 * params FLOPs per token over the GPU's dense bf16 peak (attention FLOPs ignored)."""
        if not self.peak_flops:
            return None
        return 2 * self.params * self.tokens / self.seconds / self.peak_flops

    def to_dict(self) -> dict:
        return {**self.__dict__, "tokens": self.tokens, "tok_s": self.tok_s, "peak_fraction": self.peak_fraction}


class _Words:
    def __init__(self, vocab_size: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.hi = vocab_size - 1

    def text(self, n: int) -> str:
        return " ".join(f"w{self.rng.randint(len(SPECIALS), self.hi)}" for _ in range(n))


def build_instances(w: Workload, vocab_size: int, gen_mode: GenMode, seed: int = 0) -> list:
    """lm-eval Instances with ``w``'s counts and lengths (one request type per workload)."""
    from lm_eval.api.instance import Instance

    words = _Words(vocab_size, seed)
    meta = (w.task, None, 1)
    if w.kind == "rolling":
        return [Instance("loglikelihood_rolling", {}, (words.text(w.context_tokens),), i, meta) for i in range(w.docs)]
    if w.kind == "generate":
        kw = {"until": list(w.until), "max_gen_toks": w.gen_tokens(gen_mode), "do_sample": False}
        return [Instance("generate_until", {}, (words.text(w.context_tokens), dict(kw)), i, meta) for i in range(w.docs)]
    out = []
    for doc in range(w.docs):
        ctx = words.text(w.context_tokens)
        for choice in range(w.choices if w.kind == "multiple_choice" else 1):
            if choice and not w.shared_context:
                ctx = words.text(w.context_tokens)  # WinoGrande: each option changes the context
            out.append(Instance("loglikelihood", {}, (ctx, " " + words.text(w.continuation_tokens)), len(out), meta))
    return out


def make_lm(model, tokenizer, *, batch_size: int, max_length: int):
    """lm-eval's HFLM around an in-memory model, exactly as glu_ray's evaluation builds it."""
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm-eval").setLevel(logging.ERROR)  # the "pretrained is not a str" warning
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)


def run_workload(lm, w: Workload, *, gen_mode: GenMode, params: int, peak_flops: float | None,
                 max_gen: int | None = None, sync=lambda: None) -> BenchResult:
    """Time one benchmark's requests through HFLM (request building is not timed)."""
    w = fit_workload(w, lm.max_length, gen_mode, max_gen)
    requests = build_instances(w, len(lm.tokenizer), gen_mode)
    call = {"rolling": lm.loglikelihood_rolling, "generate": lm.generate_until}.get(w.kind, lm.loglikelihood)
    sync()
    start = time.perf_counter()
    # HFLM's rolling path shows a per-batch progress bar that disable_tqdm does not reach.
    quiet = contextlib.redirect_stderr(io.StringIO()) if w.kind == "rolling" else contextlib.nullcontext()
    with quiet:
        call(requests, disable_tqdm=True)
    sync()
    seconds = time.perf_counter() - start
    steps = w.decode_steps(lm.batch_size, gen_mode)
    return BenchResult(
        task=w.task, kind=w.kind, docs=w.docs,
        loglik_requests=len(requests) if w.kind in ("multiple_choice", "loglikelihood") else 0,
        prefill_tokens=w.prefill_tokens(), gen_tokens=w.docs * w.gen_tokens(gen_mode), decode_steps=steps,
        seconds=seconds, params=params, peak_flops=peak_flops,
    )
