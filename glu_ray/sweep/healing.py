"""The trial's healing stage: evaluate as pruned, heal, evaluate the same suite again.

``with_healing`` wraps the trial's stages. The pruned model's stages run as they always do
(stage 0 may stop the trial as catastrophic, and then nothing heals); their last report says
RUNNING instead of COMPLETED. Then the unpruned model is loaded once as the teacher, the pruned
one is healed (glu_ray.recovery) and the teacher freed; the healed model runs the same stages,
numbered after the pruned ones, every key under ``healed/``; the first healed report also carries
the healing's cost (``recover/*``). The loss curve goes to the trial's files (recovery.json + .png).
"""

from __future__ import annotations

from typing import Callable, Iterator

from glu_ray.evaluation.harness import EvalResult
from glu_ray.models.loading import free_memory, load_model
from glu_ray.recovery import heal, healing_tokens
from glu_ray.trials.config import TrialConfig
from glu_ray.tracking import artifacts as trial_artifacts
from glu_ray.vocab import TrialStatus, healed_key

Stages = Iterator[tuple[int, dict, TrialStatus]]


def with_healing(cfg: TrialConfig, model, tok, stages: Stages, evaluate: Callable[..., Stages],
                 on_result: Callable[[int, EvalResult], None] | None = None) -> Stages:
    """``stages``: the pruned model's. ``evaluate(model, on_result=..., early_stop=False)`` runs the
    same stages on another model. Yields (stage, metrics, status) like the trial's own stages."""
    spec = cfg.recovery
    tokens = healing_tokens(spec, tok)  # a bad healing text fails here, before any evaluation
    last = -1
    for stage, metrics, status in stages:
        last = stage
        if status is TrialStatus.STOPPED:  # catastrophic: reported as such, never healed
            yield stage, metrics, status
            return
        yield stage, metrics, TrialStatus.RUNNING
    # The teacher as the student was loaded: same source, revision, device and dtype.
    first = next(model.parameters())
    teacher, _ = load_model(cfg.model, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
                            device=str(first.device), dtype=first.dtype)
    try:
        model, result = heal(model, teacher, tokens, spec)
    finally:
        del teacher
        free_memory()
    trial_artifacts.add_recovery(cfg.artifact_dir, spec, result)
    offset = last + 1
    shifted = (lambda s, result: on_result(s + offset, result)) if on_result else None
    cost = result.metrics()
    for stage, metrics, status in evaluate(model, on_result=shifted, early_stop=False):
        yield stage + offset, {**cost, **{healed_key(k): v for k, v in metrics.items()}}, status
        cost = {}
