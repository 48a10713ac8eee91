"""Files a trial leaves for its MLflow child run, written by the trial, logged by the driver.

Trials run in Ray workers, which never write to MLflow (see tracking.py). Each trial writes its
files into its own folder (``TrialConfig.artifact_dir``, under the sweep's storage, so shared on a
multi-node cluster), and the driver's callback logs that folder to the child run when the trial
ends:

    config.json          the pruned model's Hugging Face config (intermediate_size = its width)
    widths.json          the GLU width of every layer, before and after pruning
    lm_eval_results.json lm-eval's raw results, one entry per evaluation stage
    item_scores.json     each benchmark's primary metric item by item, one entry per evaluation
                         stage (where the metric is a mean over items): what a paired bootstrap of
                         two models on the same items reads (analysis.fragility)
    efficiency.json      the efficiency stage's full record (--measure-efficiency): every
                         measurement with its repeats' range, and what each counter measured or
                         why it was unavailable
    recovery.json        a healed trial's healing: its spec, cost and the loss of every step
    recovery_loss.png    that loss curve
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from glu_ray.models.loading import glu_layers

CONFIG, WIDTHS, LM_EVAL, EFFICIENCY = "config.json", "widths.json", "lm_eval_results.json", "efficiency.json"
ITEM_SCORES = "item_scores.json"
RECOVERY, RECOVERY_PLOT = "recovery.json", "recovery_loss.png"


def start(folder: str | None, model, original_width: int) -> None:
    """A fresh folder (a retried trial must not log its failed attempt's files), model files."""
    if not folder:
        return
    path = Path(folder)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "config"):
        _write_json(path / CONFIG, model.config.to_dict())
    widths = [t.width for t in glu_layers(model)]
    _write_json(path / WIDTHS, {"original": original_width, "layers": widths})


def add_stage(folder: str | None, stage: int, result) -> None:
    """Merge one stage's lm-eval results (an EvalResult) into the trial's results file, and its
    item scores into the item-scores file."""
    if not folder:
        return
    _merge(Path(folder) / LM_EVAL, f"stage{stage}", result.raw)
    if result.items:
        _merge(Path(folder) / ITEM_SCORES, f"stage{stage}", result.items)


def _merge(path: Path, key: str, value) -> None:
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged[key] = value
    _write_json(path, merged)


def add_efficiency(folder: str | None, record: dict) -> None:
    """The efficiency stage's record (EfficiencyResult.to_dict())."""
    if folder:
        _write_json(Path(folder) / EFFICIENCY, record)


def _write_json(path: Path, obj) -> None:
    # Write-then-rename: the driver may log the folder while a retried attempt is writing.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def add_recovery(folder: str | None, spec, result) -> None:
    """The healing's spec, cost and loss curve (RecoverySpec, RecoveryResult), and its plot."""
    if not folder:
        return
    path = Path(folder)
    _write_json(path / RECOVERY, {"spec": spec.to_dict(), "result": result.to_dict()})
    # matplotlib only where a trial heals: the other trials never pay its import.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.plot(range(1, len(result.losses) + 1), result.losses, marker="." if len(result.losses) < 60 else None)
    ax.set(xlabel="step", ylabel=f"KD loss (T={spec.temperature:g})",
           title=f"{spec.method}: {result.tokens:,} tokens, {result.seconds:.0f} s")
    ax.grid(alpha=0.3)
    tmp = path / (RECOVERY_PLOT + ".tmp")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, path / RECOVERY_PLOT)
