"""The Tune callback of the reference runs: each reference trial's stage 0, into the ledger.

A reference run is the same trial (same config, same code) ended after its first report, stage
0 (run_trial's ``last_stage``; see plan.py for why). Its numbers go to the ledger as ``reference``
events only: MLflow gets the trial once, when it runs fully in the sweep. A reference that fails
is one line; the trials that read it are held back until a rerun measures it.
"""

from __future__ import annotations

import logging
import sys

from ray.tune import Callback

from glu_ray.tracking.callback import error_line
from glu_ray.trials.config import TrialConfig
from glu_ray.trials.ledger import REFERENCE, Event, Ledger  # SEARCH events too (kind)
from glu_ray.vocab import PPL_BYTE, PPL_SECONDS, PPL_WORD, STAGE, STATUS, TRIAL_CPU_SECONDS, TRIAL_SECONDS, TrialStatus

log = logging.getLogger("glu_ray")
KEPT = (PPL_WORD, PPL_BYTE, PPL_SECONDS, TRIAL_SECONDS, TRIAL_CPU_SECONDS)


class ReferenceCallback(Callback):
    def __init__(self, ledger: Ledger, verbose: int = 1, kind: str = REFERENCE):
        self.ledger = ledger
        self.kind = kind  # REFERENCE, or SEARCH for the probes of --widths auto
        self.verbose = verbose
        self.ended: set[str] = set()  # keys whose reference run ended, measured or failed: not cut short

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if int(result[STAGE]) != 0:
            return
        cfg = _cfg(trial)
        self.ledger.append(Event(cfg.key, self.kind, 0, TrialStatus(result[STATUS]),
                                 {k: result[k] for k in KEPT if k in result}))
        if self.verbose:
            what = "reference" if self.kind == REFERENCE else "width probe"
            print(f"{what} {cfg.name} (width {cfg.width.width}): stage 0 ppl {result[PPL_WORD]:.4g}", file=sys.stdout,
                  flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended.add(_cfg(trial).key)

    def on_trial_error(self, iteration, trials, trial, **info):
        cfg = _cfg(trial)
        self.ended.add(cfg.key)
        log.warning("%s %s failed before its stage 0 (%s): what reads it waits for a rerun", self.kind, cfg.name,
                    error_line(trial))


def _cfg(trial) -> TrialConfig:
    return TrialConfig.from_dict(trial.config["trial"])
