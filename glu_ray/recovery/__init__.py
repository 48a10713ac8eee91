"""Healing after pruning: distil the unpruned model into the pruned one (KD, or LoRA via peft)."""

from glu_ray.recovery.heal import batch_order, heal, healing_tokens, kd_loss, kd_loss_on, save_healed
from glu_ray.recovery.spec import RecoveryResult, RecoverySpec
from glu_ray.recovery.students import STUDENTS

__all__ = ["RecoveryResult", "RecoverySpec", "STUDENTS", "batch_order", "heal", "healing_tokens", "kd_loss",
           "kd_loss_on", "save_healed"]
