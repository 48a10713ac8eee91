"""Inference speed of a (pruned) model: prefill and decode throughput, memory, parameters.

Why people prune: a narrower MLP means fewer FLOPs per token and less memory. A trial calls
``measure_speed`` after pruning and logs ``SpeedResult.metrics()`` next to its accuracy, so the
analysis can plot accuracy against speed. Inputs are random token ids, so any tokenizer (or just
a vocabulary size) will do and results do not depend on text.
"""

from __future__ import annotations

import inspect
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from glu_ray.models.loading import glu_layers, param_count


@dataclass(frozen=True)
class SpeedResult:
    batch: int
    prompt_len: int
    gen_len: int
    prefill_s: float  # median seconds of one prefill of [batch, prompt_len]
    decode_s: float  # median seconds of gen_len single-token steps with the KV cache
    params_total: int
    params_mlp: int
    weights_mb: float  # parameter bytes, exact on any device
    peak_mem_mb: float | None  # torch.cuda.max_memory_allocated during the measurement; None on CPU
    device: str
    dtype: str

    @property
    def prefill_tok_s(self) -> float:
        return self.batch * self.prompt_len / self.prefill_s

    @property
    def decode_tok_s(self) -> float:
        return self.batch * self.gen_len / self.decode_s

    def metrics(self) -> dict[str, float]:
        """MLflow-safe metric keys (letters, digits, ``_ / .``), numbers only."""
        out = {
            "speed/prefill_tok_s": self.prefill_tok_s,
            "speed/decode_tok_s": self.decode_tok_s,
            "speed/prefill_s": self.prefill_s,
            "speed/decode_s": self.decode_s,
            "speed/weights_mb": self.weights_mb,
            "params/total": float(self.params_total),
            "params/mlp": float(self.params_mlp),
        }
        if self.peak_mem_mb is not None:
            out["speed/peak_mem_mb"] = self.peak_mem_mb
        return out

    def to_dict(self) -> dict:
        return asdict(self) | {"prefill_tok_s": self.prefill_tok_s, "decode_tok_s": self.decode_tok_s}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _vocab(tokenizer_or_vocab, model: nn.Module) -> int:
    if isinstance(tokenizer_or_vocab, int):
        return tokenizer_or_vocab
    # Ids the tokenizer knows AND the embedding has rows for.
    return min(len(tokenizer_or_vocab), model.get_input_embeddings().num_embeddings)


def _cache_name(model: nn.Module) -> str:
    # transformers 5.x renamed past_key_values to cache (old name deprecated); 4.x knows only the old one.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def _prefill_and_decode(model: nn.Module, ids: torch.Tensor, gen_len: int) -> tuple[float, float]:
    """One timed prefill of ids [B, T] and gen_len greedy decode steps on its KV cache."""
    device, name = ids.device, _cache_name(model)
    _sync(device)
    t0 = time.perf_counter()
    out = model(input_ids=ids, use_cache=True)
    _sync(device)
    t1 = time.perf_counter()
    nxt = out.logits[:, -1:].argmax(-1)  # [B, 1]
    for _ in range(gen_len):
        out = model(input_ids=nxt, use_cache=True, **{name: getattr(out, name)})
        nxt = out.logits[:, -1:].argmax(-1)
    _sync(device)
    return t1 - t0, time.perf_counter() - t1


def measure_speed(model: nn.Module, tokenizer_or_vocab, *, prompt_len: int = 512, gen_len: int = 64,
                  batch: int = 8, repeats: int = 3, seed: int = 0) -> SpeedResult:
    """Median prefill and decode time over ``repeats`` runs after one warm-up run.

    The model stays where it is (device, dtype); peak memory is measured on CUDA only, where the
    allocator's high-water mark is reset first so earlier work does not count.
    """
    if min(prompt_len, gen_len, batch, repeats) < 1:
        raise ValueError("prompt_len, gen_len, batch and repeats must be >= 1")
    param = next(model.parameters())
    device = param.device
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, _vocab(tokenizer_or_vocab, model), (batch, prompt_len), generator=gen).to(device)  # [B, T]
    was_training = model.training
    model.eval()
    try:
        _prefill_and_decode(model, ids[:, : min(8, prompt_len)], 1)  # warm-up: kernels, allocator
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        runs = [_prefill_and_decode(model, ids, gen_len) for _ in range(repeats)]
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    finally:
        model.train(was_training)
    mlp = sum(p.numel() for t in glu_layers(model) for p in t.mlp.parameters())
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return SpeedResult(
        batch=batch, prompt_len=prompt_len, gen_len=gen_len,
        prefill_s=statistics.median(r[0] for r in runs), decode_s=statistics.median(r[1] for r in runs),
        params_total=param_count(model), params_mlp=mlp, weights_mb=weights, peak_mem_mb=peak,
        device=str(device), dtype=str(param.dtype).removeprefix("torch."),
    )
