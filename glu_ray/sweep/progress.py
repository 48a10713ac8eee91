"""One compact line per trial event on the driver's terminal, in place of Ray Tune's reporter.

    [ 3/20] tiny-llama-a  maw        2x  stage 0  running               ppl 12.41 (1.31x baseline)
    [ 4/20] tiny-llama-a  maw      1.2x  stage 0  stopped: catastrophic ppl 311.9 (25.1x baseline)

Ray Tune's own output (a configuration box per trial start, a status table every few seconds) is
off below ``--verbose 2``; the sweep prints the final results table itself.
"""

from __future__ import annotations

import math
import sys
from typing import TextIO

from ray.tune import Callback

from glu_ray.trials.config import TrialConfig
from glu_ray.vocab import PPL_RATIO, PPL_WORD, STAGE, STATUS, TrialStatus, ratio_label


def progress_line(cfg: TrialConfig, stage: int | None, status: TrialStatus, ppl: float | None,
                  ppl_ratio: float | None, done: int, total: int) -> str:
    ratio = "native" if cfg.is_baseline else ratio_label(cfg.width.expansion_ratio)
    where = f"stage {stage}" if stage is not None else "       "
    line = f"[{done:>{len(str(total))}}/{total}] {cfg.model_name:<14} {cfg.method:<8} {ratio:>6}  {where}  {status.value:<21}"
    if ppl is not None:
        line += f" ppl {ppl:.4g}"
        if ppl_ratio is not None and math.isfinite(ppl_ratio) and not cfg.is_baseline:
            line += f" ({ppl_ratio:.3g}x baseline)"
    return line.rstrip()


class ProgressCallback(Callback):
    """Prints after every stage a trial reports and when it fails; ``total`` counts the phase's trials."""

    def __init__(self, total: int, out: TextIO | None = None):
        self.total = total
        self.out = out
        self.done = 0
        self.seen: dict[str, dict] = {}  # Tune trial id -> {"stage", "status", "ppl", "ppl_x"}

    def _print(self, trial, **state) -> None:
        cfg = TrialConfig.from_dict(trial.config["trial"])
        s = self.seen.setdefault(trial.trial_id, {})
        s.update(state)
        print(progress_line(cfg, s.get("stage"), s["status"], s.get("ppl"), s.get("ppl_x"), self.done, self.total),
              file=self.out or sys.stdout, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        status = TrialStatus(result[STATUS])
        self.done += status is not TrialStatus.RUNNING
        extra = {"ppl": result[PPL_WORD], "ppl_x": result.get(PPL_RATIO)} if PPL_WORD in result else {}
        self._print(trial, stage=int(result[STAGE]), status=status, **extra)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.seen.get(trial.trial_id, {}).get("status") is TrialStatus.RUNNING:  # stopped by Tune
            self.done += 1
            self._print(trial, status=TrialStatus.FAILED)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self._print(trial, status=TrialStatus.FAILED)
