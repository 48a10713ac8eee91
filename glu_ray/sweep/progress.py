"""One compact line per trial event on the driver's terminal, in place of Ray Tune's reporter.

    [ 3/20] tiny-llama-a  maw        2x  stage 0  running               ppl 12.41 (1.31x baseline)
    [ 4/20] tiny-llama-a  maw      1.2x  stage 0  stopped: catastrophic ppl 311.9 (25.1x baseline)
    [ 5/20] tiny-llama-b  baseline native           failed: cannot reach the Hugging Face hub at ...

Between those, a running trial's own progress (tokens or requests done, rate, ETA) every ~20 s of
a long stage, drained from the sweep's progress actor (progress_log.py):

    [ 3/20] SmolLM2-135M-Instruct/maw/3.6x stage 0 perplexity: 4,096/9,211 tokens (44%), 120 tokens/s, ETA 43s

Ray Tune's own output (a configuration box per trial start, a status table every few seconds) is
off below ``--verbose 2``; the sweep prints the final results table itself.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import TextIO

from ray.tune import Callback

from glu_ray.sweep.budget import Budget
from glu_ray.sweep.progress_log import create_progress_log
from glu_ray.tracking.callback import error_line
from glu_ray.trials.config import TrialConfig
from glu_ray.vocab import BASELINE, METRIC, PPL_RATIO, PPL_SECONDS, PPL_WORD, STAGE, STATUS, TrialStatus, ratio_label


def progress_line(cfg: TrialConfig, stage: int | None, status: TrialStatus, ppl: float | None,
                  ppl_ratio: float | None, done: int, total: int, error: str | None = None) -> str:
    """``error``: a failed trial's one line (its traceback is in Ray's trial folder, at verbose 2 on the terminal)."""
    ratio = "native" if cfg.is_baseline else ratio_label(cfg.width.expansion_ratio)
    where = f"stage {stage}" if stage is not None else "       "
    line = f"[{done:>{len(str(total))}}/{total}] {cfg.model_name:<14} {cfg.method:<8} {ratio:>6}  {where}  {status.value:<21}"
    if ppl is not None:
        line += f" ppl {ppl:.4g}"
        if ppl_ratio is not None and math.isfinite(ppl_ratio) and not cfg.is_baseline:
            line += f" ({ppl_ratio:.3g}x baseline)"
    return f"{line.rstrip()}: {error}" if error else line.rstrip()


log = logging.getLogger("glu_ray")


class TrialLinesCallback(Callback):
    """Prints the running trials' own progress lines (progress_log.py) as they arrive: every Tune
    experiment of a sweep has one, the stage-0-only reference and width-search runs included."""

    def __init__(self, out: TextIO | None = None):
        self.out = out
        self.log = self.pending = None  # the progress actor (created where Ray runs: setup) and its drain call

    def setup(self, **info):
        self.log = create_progress_log()
        self.pending = None  # the drain call in flight: Tune's loop never waits on it

    def on_step_end(self, iteration, trials, **info):
        if self.log is not None:
            self.drain(wait=0)

    def on_experiment_end(self, trials, **info):
        if self.log is not None:
            self.drain(wait=5)

    def drain(self, wait: float = 5) -> None:
        """Print the lines the actor holds: collect the drain call in flight if it has answered
        within ``wait`` seconds (0: only if it already has), then start the next one."""
        import ray  # lazy, as Tune: only where a sweep runs

        try:
            if self.pending is None:
                self.pending = self.log.drain.remote()
            ready, _ = ray.wait([self.pending], timeout=wait)
            if not ready:
                return
            lines, self.pending = ray.get(self.pending), None
        except Exception as err:  # noqa: BLE001 - progress lines are a courtesy: never the sweep's end
            log.debug("progress actor unavailable: %s", err)
            self.log = self.pending = None
            return
        for line in lines:
            print(self.prefix() + line, file=self.out or sys.stdout, flush=True)

    def prefix(self) -> str:
        return ""


class ProgressCallback(TrialLinesCallback):
    """Prints after every stage a trial reports and when it fails, and the running trials' own
    progress lines in between; ``total`` counts the phase's trials."""

    def __init__(self, total: int, out: TextIO | None = None, budget: Budget | None = None):
        super().__init__(out)
        self.total = total
        self.budget = budget  # the preset's time promise: a slow machine is told what to expect
        self.done = 0
        self.seen: dict[str, dict] = {}  # Tune trial id -> {"stage", "status", "ppl", "ppl_x"}

    def prefix(self) -> str:
        return f"[{self.done:>{len(str(self.total))}}/{self.total}] "

    def _print(self, trial, **state) -> None:
        cfg = TrialConfig.from_dict(trial.config["trial"])
        s = self.seen.setdefault(trial.trial_id, {})
        s.update(state)
        print(progress_line(cfg, s.get("stage"), s["status"], s.get("ppl"), s.get("ppl_x"), self.done, self.total,
                            s.get("error")), file=self.out or sys.stdout, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        status = TrialStatus(result[STATUS])
        self.done += status is not TrialStatus.RUNNING
        extra = {"ppl": result[PPL_WORD], "ppl_x": result.get(PPL_RATIO)} if PPL_WORD in result else {}
        self._print(trial, stage=int(result[STAGE]), status=status, **extra)
        if self.budget and PPL_SECONDS in result and result.get(METRIC) == BASELINE:
            warning = self.budget.check(float(result[PPL_SECONDS]))
            if warning:
                print(warning, file=self.out or sys.stdout, flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.seen.get(trial.trial_id, {}).get("status") is TrialStatus.RUNNING:  # stopped by Tune
            self.done += 1
            self._print(trial, status=TrialStatus.FAILED)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self._print(trial, status=TrialStatus.FAILED, error=error_line(trial))
