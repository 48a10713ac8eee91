"""Answer lengths: how many tokens a model writes, greedily, before its own EOS, on a fixed prompt set.

This is the other half of latency. speed.py forces every generation to one length, so it measures
the cost of a token; this module lets the model stop, so it measures how many tokens it chooses
to spend (the reference study's pruned instruct models were slower per answer because they wrote
more, not because a token cost more). Prompts come from prompts.yaml, one at a time (batch 1,
no padding), with the model's chat template for chat models.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from glu_ray.efficiency.speed import eos_ids, greedy_config, sync

PROMPTS = Path(__file__).with_name("prompts.yaml")


@dataclass(frozen=True)
class AnswerLengths:
    max_new_tokens: int  # the cap: an answer this long never reached EOS
    lengths: tuple[int, ...]  # tokens before EOS (EOS itself not counted), per prompt
    capped: tuple[bool, ...]  # hit the cap without EOS
    seconds: tuple[float, ...]  # wall time of each answer: what a user waits
    chat_template: bool

    @property
    def mean(self) -> float:
        return statistics.fmean(self.lengths)

    @property
    def median(self) -> float:
        return statistics.median(self.lengths)

    @property
    def capped_frac(self) -> float:
        return sum(self.capped) / len(self.capped)

    @property
    def latency_s(self) -> float:
        """Mean seconds per answer."""
        return statistics.fmean(self.seconds)


def load_prompts(path: str | Path = PROMPTS) -> tuple[str, ...]:
    prompts = yaml.safe_load(Path(path).read_text())["prompts"]
    return tuple(str(p) for p in prompts)


def encode(tokenizer, prompt: str, chat: bool) -> list[int]:
    """Token ids of one prompt: through the chat template (with the assistant's turn opened) when asked."""
    if chat:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"]


def answer_length(new: list[int], stop: set[int]) -> tuple[int, bool]:
    """(tokens before the first EOS, capped = no EOS at all)."""
    for i, tok in enumerate(new):
        if tok in stop:
            return i, False
    return len(new), True


@torch.no_grad()
def measure_answers(model: nn.Module, tokenizer, prompts: tuple[str, ...], *, max_new_tokens: int,
                    chat: bool = False) -> AnswerLengths:
    """Greedy answers to ``prompts`` until EOS or ``max_new_tokens``; ``chat`` applies the tokenizer's
    chat template (ignored when it has none)."""
    if not prompts or max_new_tokens < 1:
        raise ValueError("answer lengths need at least one prompt and max_new_tokens >= 1")
    chat = bool(chat and getattr(tokenizer, "chat_template", None))
    device = next(model.parameters()).device
    stop, config = set(eos_ids(model)), greedy_config(max_new_tokens, model, forced=False)
    was_training = model.training
    model.eval()
    lengths, capped, seconds = [], [], []
    try:
        for prompt in prompts:
            ids = torch.tensor([encode(tokenizer, prompt, chat)], device=device)  # [1, T]
            sync(device)
            start = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
            sync(device)
            seconds.append(time.perf_counter() - start)
            n, cap = answer_length(out[0, ids.shape[1]:].tolist(), stop)
            lengths.append(n)
            capped.append(cap)
    finally:
        model.train(was_training)
    return AnswerLengths(max_new_tokens, tuple(lengths), tuple(capped), tuple(seconds), chat)
