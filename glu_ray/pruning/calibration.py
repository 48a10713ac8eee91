"""Calibration data and per-neuron activation statistics for the data-driven metrics.

A ``CalibrationSpec`` names the text (``wikitext``: WikiText-2's *train* split, the split lm-eval
does not score; or a local text file), how many sequences of how many tokens, and the seed that
picks them. ``calibration_tokens`` turns it into one [n, seq_len] token tensor for a tokenizer
(the healing step trains on the same tensor). ``collect_stats`` runs the model over batches once,
with a hook on every ``down_proj``, and keeps per layer and per neuron the running sums of its
input ``act(gate(x)) * up(x)``: sum, sum of squares and the token count. Activations are never
stored, and padding tokens (attention_mask 0) are left out of every sum.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from glu_ray.errors import GluRayError
from glu_ray.text import encode, split_documents
from glu_ray.models.loading import glu_layers

WIKITEXT = "wikitext"
# The dataset lm-eval's wikitext task reads, but its train split: calibration never sees the
# test pages that stage 0 and lm-eval score.
WIKITEXT_TRAIN = ("EleutherAI/wikitext_document_level", "wikitext-2-raw-v1", "train")
# Tokens per chunk when a hook adds a batch into the fp64 sums: bounds the fp64 copy to
# CHUNK x I x 8 bytes (64 MiB at I = 8192) whatever the batch and sequence length.
CHUNK = 1024


@dataclass(frozen=True)
class CalibrationSpec:
    """Which text, how much of it, and the seed that picks it; ``fingerprint`` identifies it.

    ``skip_docs`` drops the file's first documents: when the evaluation text is the start of the
    same file (stage 0 reads its first documents), calibration stays disjoint from it.
    """

    source: str = WIKITEXT  # "wikitext" or a local text file
    n_sequences: int = 128
    seq_len: int = 256
    seed: int = 0
    skip_docs: int = 0

    def __post_init__(self) -> None:
        for name in ("n_sequences", "seq_len"):
            if getattr(self, name) < 1:
                raise GluRayError(f"calibration {name} must be at least 1 (got {getattr(self, name)})")
        if self.skip_docs < 0:
            raise GluRayError(f"calibration skip_docs must be >= 0 (got {self.skip_docs})")
        if self.source != WIKITEXT:
            path = Path(self.source).expanduser()
            if not path.is_file():
                raise GluRayError(f"calibration source {self.source!r} is neither 'wikitext' nor a readable file")
            # Absolute, so a Ray trial in another working directory reads the same file.
            object.__setattr__(self, "source", str(path.resolve()))

    @cached_property
    def fingerprint(self) -> str:
        """12 hex digits over the text's content (not its path) and every field that picks tokens."""
        content = "/".join(WIKITEXT_TRAIN) if self.source == WIKITEXT else _file_digest(self.source)
        key = {"content": content, "n": self.n_sequences, "len": self.seq_len, "seed": self.seed,
               "skip": self.skip_docs}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]

    def params(self) -> dict[str, str | int]:
        """What a tracked run records about its calibration."""
        return {"calibration": self.source, "calibration_sequences": self.n_sequences,
                "calibration_seq_len": self.seq_len, "calibration_seed": self.seed,
                "calibration_skip_docs": self.skip_docs, "calibration_fingerprint": self.fingerprint}


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def calibration_documents(spec: CalibrationSpec) -> list[str]:
    """The spec's documents, in file order, after ``skip_docs``: fails here, before any forward pass."""
    if spec.source == WIKITEXT:
        docs = _wikitext_train()
    else:
        docs = split_documents(Path(spec.source).read_text(encoding="utf-8"))
    docs = docs[spec.skip_docs:]
    if not docs:
        raise GluRayError(f"calibration source {spec.source} has no documents after skipping {spec.skip_docs}")
    return docs


def _wikitext_train() -> list[str]:
    import datasets  # lazy: datasets costs ~1.5 s at import (python -X importtime, shared CPU)

    path, name, split = WIKITEXT_TRAIN
    try:
        return [p for p in datasets.load_dataset(path, name, split=split)["page"] if p.strip()]
    except Exception as err:  # noqa: BLE001 - offline, no cache, hub errors: all mean "not reachable here"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GluRayError(f"WikiText-2 train split is not reachable ({first}); "
                          "pass a local text file as the calibration source") from None


def calibration_tokens(spec: CalibrationSpec, tokenizer) -> torch.Tensor:
    """[n_sequences, seq_len] int64 token ids, the same for the same spec and tokenizer.

    Documents are shuffled with the seed, encoded as stage 0 encodes them (with BOS), joined, and
    cut into consecutive windows: full-length sequences, no padding, no token used twice, and only
    as much text tokenized as the windows need.
    """
    docs = calibration_documents(spec)
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(spec.seed)).tolist()
    need = spec.n_sequences * spec.seq_len
    stream: list[int] = []
    for i in order:
        stream += encode(tokenizer, docs[i])
        if len(stream) >= need:
            break
    if len(stream) < need:
        raise GluRayError(f"calibration source {spec.source} holds {len(stream)} tokens; "
                          f"{spec.n_sequences} x {spec.seq_len} = {need} needed (fewer or shorter sequences?)")
    return torch.tensor(stream[:need], dtype=torch.long).reshape(spec.n_sequences, spec.seq_len)


@dataclass(frozen=True)
class NeuronStats:
    """One layer's running sums over every unpadded calibration token, per MLP neuron (fp64)."""

    sum: torch.Tensor  # [I] fp64: sum of x_i
    sumsq: torch.Tensor  # [I] fp64: sum of x_i^2
    count: int  # tokens summed (the same for every neuron)

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.count

    @property
    def l2(self) -> torch.Tensor:
        """||X_i||_2 over all tokens, the CFSP / OptiPFair activation norm: [I] fp64."""
        return self.sumsq.sqrt()

    @property
    def variance(self) -> torch.Tensor:
        """Unbiased variance of x_i over tokens (FLAP's fluctuation): [I] fp64.

        From the sums in fp64: the cancellation in sumsq - sum^2 / n costs ~1e-16 x sumsq / var,
        negligible unless a neuron's mean is ~1e6 times its spread.
        """
        n = self.count
        return ((self.sumsq - self.sum * self.sum / n) / max(n - 1, 1)).clamp_min(0)


@dataclass(frozen=True)
class CalibrationStats:
    """Statistics of every GLU layer of one model over one calibration spec."""

    fingerprint: str
    layers: tuple[NeuronStats, ...]
    seconds: float = 0.0
    params: dict = field(default_factory=dict)  # the spec's params(), for tracking

    @property
    def tokens(self) -> int:
        return self.layers[0].count if self.layers else 0

    def save(self, path: str | Path) -> None:
        torch.save({"fingerprint": self.fingerprint, "sum": [s.sum for s in self.layers],
                    "sumsq": [s.sumsq for s in self.layers], "count": [s.count for s in self.layers],
                    "seconds": self.seconds, "params": self.params}, path)

    @classmethod
    def load(cls, path: str | Path) -> CalibrationStats:
        d = torch.load(path, weights_only=True)
        layers = tuple(NeuronStats(s, q, c) for s, q, c in zip(d["sum"], d["sumsq"], d["count"]))
        return cls(d["fingerprint"], layers, d["seconds"], d["params"])


class _Accumulator:
    """Forward pre-hook on one down_proj: adds the unpadded rows of its input to fp64 sums."""

    def __init__(self, width: int, device: torch.device, mask_ref: list):
        self.sum = torch.zeros(width, dtype=torch.float64, device=device)
        self.sumsq = torch.zeros(width, dtype=torch.float64, device=device)
        self.count = 0
        self._mask = mask_ref  # [current attention mask or None], set by collect_stats per batch

    def __call__(self, module: nn.Module, inputs: tuple) -> None:
        x = inputs[0].detach()  # [B, S, I] in the model's dtype
        mask = self._mask[0]
        rows = x[mask.to(x.device, torch.bool)] if mask is not None else x.reshape(-1, x.shape[-1])  # [T, I]
        for start in range(0, rows.shape[0], CHUNK):
            chunk = rows[start : start + CHUNK].double()
            self.sum += chunk.sum(dim=0)
            self.sumsq += (chunk * chunk).sum(dim=0)
        self.count += rows.shape[0]


@torch.no_grad()
def collect_stats(model: nn.Module, batches: Iterable[dict], fingerprint: str = "custom") -> CalibrationStats:
    """One pass of ``model`` over ``batches`` ({"input_ids": [B, S], "attention_mask": [B, S] or absent}).

    Runs on the model's device and dtype; hooks are removed even when a forward pass fails.
    """
    triples = glu_layers(model)
    device = next(model.parameters()).device
    mask_ref: list = [None]
    accs = [_Accumulator(t.width, device, mask_ref) for t in triples]
    handles = [t.down.register_forward_pre_hook(acc) for t, acc in zip(triples, accs)]
    start = time.perf_counter()
    try:
        for batch in batches:
            mask = batch.get("attention_mask")
            mask_ref[0] = mask
            model(input_ids=batch["input_ids"].to(device),
                  attention_mask=None if mask is None else mask.to(device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
        mask_ref[0] = None
    if not accs or accs[0].count == 0:
        raise GluRayError("calibration saw no tokens (empty batches, or every token masked)")
    layers = tuple(NeuronStats(a.sum.cpu(), a.sumsq.cpu(), a.count) for a in accs)
    return CalibrationStats(fingerprint, layers, time.perf_counter() - start)


def token_batches(tokens: torch.Tensor, batch_size: int) -> list[dict]:
    """Unpadded batches of ``batch_size`` rows of ``tokens`` [n, L] (the last may be smaller)."""
    if batch_size < 1:
        raise GluRayError(f"calibration batch size must be at least 1 (got {batch_size})")
    return [{"input_ids": tokens[i : i + batch_size]} for i in range(0, tokens.shape[0], batch_size)]


def calibrate(model: nn.Module, tokenizer, spec: CalibrationSpec, *, batch_size: int = 8) -> CalibrationStats:
    """Statistics of ``model`` over ``spec``'s tokens: what every data-driven metric reads."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is not None and spec.seq_len > limit:
        raise GluRayError(f"calibration seq_len {spec.seq_len} exceeds the model's context ({limit})")
    tokens = calibration_tokens(spec, tokenizer)
    stats = collect_stats(model, token_batches(tokens, batch_size), spec.fingerprint)
    return CalibrationStats(stats.fingerprint, stats.layers, stats.seconds, spec.params())
