"""The recovery methods: what of the pruned model is trained, one registry entry per method.

Every method distils the same teacher with the same loop (glu_ray.recovery.heal); a method only
says which parameters train (``prepare``) and how to turn the trained module back into a plain
transformers model (``finish``). ``lora`` is peft's LoRA on every linear layer, merged into the
weights, so a healed model always saves and reloads as a stock model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Student:
    name: str
    prepare: Callable[[nn.Module, "object"], nn.Module]  # (model, RecoverySpec) -> module to train
    finish: Callable[[nn.Module], nn.Module]  # trained module -> the plain model, weights merged
    lr: float  # default learning rate
    doc: str


STUDENTS: dict[str, Student] = {}


def student(name: str, *, lr: float, doc: str, finish: Callable[[nn.Module], nn.Module] = lambda m: m):
    def register(prepare):
        STUDENTS[name] = Student(name, prepare, finish, lr, doc)
        return prepare

    return register


# Learning rates: full-weight distillation moves every weight of a model that is already close, so
# a small step; LoRA trains new low-rank factors from zero, so a larger one (LLM-Pruner: 1e-4).
@student("kd", lr=5e-5, doc="every parameter of the pruned model (Minitron-style logit distillation)")
def _all_weights(model: nn.Module, spec) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _merge(module: nn.Module) -> nn.Module:
    return module.merge_and_unload()  # the base model with W += B @ A * alpha / r, adapters removed


@student("lora", lr=5e-4, finish=_merge, doc="peft LoRA adapters on every linear layer, merged afterwards")
def _lora(model: nn.Module, spec) -> nn.Module:
    # peft costs ~1 s to import and only this method needs it.
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_dropout=0.0,
                     target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)
