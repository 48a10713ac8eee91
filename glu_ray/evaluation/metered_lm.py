"""lm-eval's HFLM, counting the requests it answers on a Meter: progress lines inside a long stage.

``simple_evaluate`` hands the model all of one call's requests of a kind at once (every task's
loglikelihood requests in one list), so the phase's total is that list's length. HFLM reports
each answered request to its cache hook (``add_partial``); the count hooks in there, through
lm-eval's own ``set_cache_hook``, and leaves the scoring untouched.
"""

from __future__ import annotations

import functools

from glu_ray.evaluation.meter import Meter


def metered_hflm(meter: Meter, label: str, **hflm_args):
    """``HFLM(**hflm_args)`` whose loglikelihood, rolling and generation calls are metered phases."""
    return _metered_class()(meter=meter, label=label, **hflm_args)


@functools.cache
def _metered_class():
    from lm_eval.api.model import CacheHook  # lazy: HFLM costs ~4 s at import (see harness.py)
    from lm_eval.models.huggingface import HFLM

    class CountingHook(CacheHook):
        def __init__(self, meter: Meter):
            super().__init__(None)  # no cache database: count only
            self.meter = meter

        def add_partial(self, attr, req, res) -> None:
            self.meter.add(1)

    class MeteredHFLM(HFLM):
        def __init__(self, *, meter: Meter, label: str, **hflm_args):
            super().__init__(**hflm_args)
            self.meter, self.label = meter, label
            self.set_cache_hook(CountingHook(meter))

        def _phase(self, kind: str, requests: list):
            return self.meter.phase(f"{self.label} {kind}", len(requests), "requests")

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            with self._phase("loglikelihood", requests):
                return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            with self._phase("rolling loglikelihood", requests):
                return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

        def generate_until(self, requests, disable_tqdm: bool = False):
            with self._phase("generation", requests):
                return super().generate_until(requests, disable_tqdm=disable_tqdm)

    return MeteredHFLM
