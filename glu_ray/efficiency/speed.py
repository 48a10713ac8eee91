"""Prefill and decode throughput of a (pruned) model, with generation forced to a fixed length.

Speed is measured apart from answer length: ``generate`` runs with ``min_new_tokens =
max_new_tokens = gen_len`` (EOS is masked until then), so every run produces exactly ``gen_len``
tokens per row whatever the model would have said (answers.py measures what it says). Prompts are
random token ids of a fixed length, so results do not depend on text or tokenizer.

One ``generate`` call gives both numbers: a logits processor notes the time of its first call,
which is when the prefill forward (prompt -> first token's logits) has finished; the rest of the
call is the ``gen_len - 1`` decode steps on the KV cache.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from glu_ray.efficiency.energy import EnergyReading, open_meter
from glu_ray.efficiency.memory import MemoryReading, PeakMemory


@dataclass(frozen=True)
class Stat:
    """Median of repeated runs, with their range."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Stat":
        return cls(statistics.median(values), min(values), max(values), len(values))

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.1 = the runs spread over 10% of their median."""
        return (self.hi - self.lo) / self.median if self.median else float("nan")


@dataclass(frozen=True)
class Throughput:
    """One batch size: ``repeats`` timed forced-length generations after one warm-up."""

    batch: int
    prompt_len: int
    gen_len: int  # tokens generated per row, every run (checked)
    prefill_tok_s: Stat  # batch * prompt_len / prefill seconds
    decode_tok_s: Stat  # batch * (gen_len - 1) / decode seconds
    prefill_cpu_tok_s: Stat  # the same per second of this process's CPU time (meaningful on a CPU device)
    decode_cpu_tok_s: Stat
    memory: MemoryReading  # peak during the timed runs
    energy: EnergyReading  # over the timed runs

    @property
    def generated_tokens(self) -> int:
        return self.batch * self.gen_len * self.prefill_tok_s.n

    @property
    def energy_j_per_tok(self) -> float | None:
        """Joules per generated token, its share of the prompt's prefill included; None if unmeasured."""
        return self.energy.joules / self.generated_tokens if self.energy.joules is not None else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class GenTiming:
    """Seconds of one forced-length generation, by the wall clock and by this process's CPU time
    (on a shared machine, waiting for a core inflates the first, much less the second)."""

    prefill_s: float
    decode_s: float
    prefill_cpu_s: float
    decode_cpu_s: float


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class _FirstLogits(LogitsProcessor):
    """Notes the time of the first call: the prefill forward has produced its logits."""

    def __init__(self, device: torch.device):
        self.device, self.at = device, None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.at is None:
            sync(self.device)
            self.at = _clocks()
        return scores


def eos_ids(model: nn.Module) -> list[int]:
    """The ids that end an answer: the generation config's (chat models list several), else the model's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = getattr(model.config, "eos_token_id", None)
    return [] if ids is None else [ids] if isinstance(ids, int) else list(ids)


def greedy_config(max_new_tokens: int, model: nn.Module, *, forced: bool) -> GenerationConfig:
    """Greedy decoding with nothing inherited from the checkpoint's sampling settings. ``forced``:
    EOS is masked until ``max_new_tokens``, so every row gets exactly that many tokens."""
    eos = eos_ids(model)
    pad = getattr(model.config, "pad_token_id", None)
    return GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens if forced else 0,
                            do_sample=False, eos_token_id=eos or None,
                            pad_token_id=pad if pad is not None else (eos[0] if eos else 0))


@torch.no_grad()
def forced_generate(model: nn.Module, ids: torch.Tensor, gen_len: int) -> tuple[torch.Tensor, GenTiming]:
    """Greedy generation of exactly ``gen_len`` new tokens per row of ``ids`` [B, T]:
    (new tokens [B, gen_len], its timing)."""
    if gen_len < 2:
        raise ValueError("gen_len must be >= 2 (one token comes from the prefill, the rest are decode steps)")
    clock = _FirstLogits(ids.device)
    sync(ids.device)
    start = _clocks()
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         generation_config=greedy_config(gen_len, model, forced=True),
                         logits_processor=LogitsProcessorList([clock]))
    sync(ids.device)
    end = _clocks()
    new = out[:, ids.shape[1]:]
    if new.shape[1] != gen_len:  # the invariant every speed figure rests on
        raise RuntimeError(f"forced-length generation produced {new.shape[1]} tokens, not {gen_len}")
    (w0, c0), (w1, c1), (w2, c2) = start, clock.at, end
    return new, GenTiming(w1 - w0, w2 - w1, c1 - c0, c2 - c1)


def random_prompts(model: nn.Module, batch: int, prompt_len: int, seed: int = 0) -> torch.Tensor:
    """[batch, prompt_len] token ids drawn from the embedding's rows, on the model's device."""
    vocab = model.get_input_embeddings().num_embeddings
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, prompt_len), generator=gen).to(next(model.parameters()).device)


def measure_throughput(model: nn.Module, *, batch: int, prompt_len: int, gen_len: int, repeats: int,
                       seed: int = 0) -> Throughput:
    """Median prefill and decode tokens/s over ``repeats`` forced-length runs after one warm-up;
    peak memory and energy over the timed runs. The model stays where it is (device, dtype)."""
    if min(batch, prompt_len, repeats) < 1:
        raise ValueError("batch, prompt_len and repeats must be >= 1")
    ids = random_prompts(model, batch, prompt_len, seed)
    device = ids.device
    was_training = model.training
    model.eval()
    try:
        forced_generate(model, ids, 2)  # warm-up: kernels, allocator, caches
        meter = open_meter(device)
        with PeakMemory(device) as peak:
            start, t0 = meter.read(), time.perf_counter()
            runs = [forced_generate(model, ids, gen_len)[1] for _ in range(repeats)]
            energy = meter.reading(start, time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return Throughput(
        batch=batch, prompt_len=prompt_len, gen_len=gen_len,
        prefill_tok_s=Stat.of([batch * prompt_len / r.prefill_s for r in runs]),
        decode_tok_s=Stat.of([batch * (gen_len - 1) / r.decode_s for r in runs]),
        prefill_cpu_tok_s=Stat.of([batch * prompt_len / r.prefill_cpu_s for r in runs]),
        decode_cpu_tok_s=Stat.of([batch * (gen_len - 1) / r.decode_cpu_s for r in runs]),
        memory=peak.reading, energy=energy,
    )
