"""Heal a pruned model by distilling its unpruned teacher: a plain torch KD loop.

Each step takes ``batch_size`` sequences in a seeded order, runs the teacher (no grad) and the
student on them, and minimises KL(teacher || student) on temperature-softened logits, scaled by
T^2 (Hinton et al.), averaged over tokens. torch.optim.AdamW with a linear warm-up then cosine
decay (torch.optim.lr_scheduler), gradients clipped at norm 1. On a GPU the student trains in
fp32 master weights under bf16 autocast (bf16 weights would round most small updates away) and
goes back to its own dtype after, so the healed model is evaluated and saved as the pruned one was.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from glu_ray.efficiency.memory import PeakMemory
from glu_ray.errors import GluRayError
from glu_ray.pruning.calibration import calibration_tokens
from glu_ray.pruning.prune import save_pruned
from glu_ray.recovery.spec import RecoveryResult, RecoverySpec
from glu_ray.recovery.students import STUDENTS

GRAD_CLIP = 1.0


def healing_tokens(spec: RecoverySpec, tokenizer) -> torch.Tensor:
    """[steps * batch_size, seq_len] token ids from the spec's calibration source."""
    return calibration_tokens(spec.data, tokenizer)


def batch_order(n: int, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """[steps, batch_size] row indices: seeded permutations of range(n), one per pass over the rows."""
    gen = torch.Generator().manual_seed(seed)
    need = steps * batch_size
    passes = torch.cat([torch.randperm(n, generator=gen) for _ in range(math.ceil(need / n))])
    return passes[:need].reshape(steps, batch_size)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x mean over tokens of KL(softmax(t / T) || softmax(s / T)); logits [..., V], in fp32."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1).flatten(0, -2)  # [N, V]
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1).flatten(0, -2)  # [N, V]
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


@torch.no_grad()
def kd_loss_on(student: nn.Module, teacher: nn.Module, ids: torch.Tensor, temperature: float = 2.0) -> float:
    """The KD loss of ``student`` against ``teacher`` on one fixed batch [B, T], no training."""
    device = next(student.parameters()).device
    ids = ids.to(device)
    return float(kd_loss(student(input_ids=ids, use_cache=False).logits,
                         teacher(input_ids=ids, use_cache=False).logits, temperature))


def _schedule(opt: torch.optim.Optimizer, spec: RecoverySpec):
    warm = int(spec.warmup * spec.steps)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, spec.steps - warm))
    if warm == 0:
        return cosine
    ramp = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / (warm + 1), total_iters=warm)
    return torch.optim.lr_scheduler.SequentialLR(opt, [ramp, cosine], milestones=[warm])


def heal(student: nn.Module, teacher: nn.Module, tokens: torch.Tensor, spec: RecoverySpec) -> tuple[nn.Module, RecoveryResult]:
    """Train ``student`` (the pruned model, changed in place) towards ``teacher`` on ``tokens``
    [n, seq_len] for ``spec.steps`` steps; returns the healed plain model and what it cost."""
    if tokens.ndim != 2 or tokens.shape[0] < 1:
        raise GluRayError(f"healing needs a [sequences, seq_len] token tensor, got shape {tuple(tokens.shape)}")
    if student.config.vocab_size != teacher.config.vocab_size:
        raise GluRayError("student and teacher must share a vocabulary (the teacher is the unpruned model)")
    device, dtype = next(student.parameters()).device, next(student.parameters()).dtype
    order = batch_order(tokens.shape[0], spec.steps, spec.batch_size, spec.seed)
    method = STUDENTS[spec.method]
    teacher.eval().requires_grad_(False)
    student.float()  # fp32 master weights (a no-op for the fp32 models of a CPU run)
    torch.manual_seed(spec.seed)  # LoRA's initialisation
    module = method.prepare(student, spec)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=0.0)
    sched = _schedule(opt, spec)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    module.train()
    losses = []
    with PeakMemory(device) as peak:
        start = time.perf_counter()
        for step in range(spec.steps):
            ids = tokens[order[step]].to(device)  # [B, T]
            with torch.no_grad(), autocast:
                target = teacher(input_ids=ids, use_cache=False).logits  # [B, T, V]
            with autocast:
                loss = kd_loss(module(input_ids=ids, use_cache=False).logits, target, spec.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            opt.step()
            sched.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - start
    del opt, target, loss
    model = method.finish(module).to(dtype).eval().requires_grad_(False)
    reading = peak.reading
    result = RecoveryResult(
        method=spec.method, steps=spec.steps, tokens=spec.tokens, seconds=seconds,
        peak_memory_mb=reading.peak_mb if reading.available else math.nan,
        trainable_params=sum(p.numel() for p in params), losses=tuple(losses), lr=spec.learning_rate,
    )
    return model, result


def save_healed(model: nn.Module, tokenizer, out_dir: str | Path, result: RecoveryResult | None = None,
                prune_report=None) -> Path:
    """A folder stock ``from_pretrained`` reloads (LoRA is already merged by ``heal``)."""
    out = save_pruned(model, tokenizer, out_dir, prune_report)
    if result is not None:
        (out / "glu_ray_recovery.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return out
