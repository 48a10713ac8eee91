"""A long run of trials in one worker process (what ``reuse_actors=True`` gives a Ray worker) does
not grow: every model, tokenizer and lm-eval evaluator is released when its trial returns.

The real trial function (``trainable.run_trial``: load, rank, prune, stage-0 perplexity, lm-eval)
runs 15 times in this process (three passes over five widths) with Tune's report captured. Every model (pruned in place), tokenizer
and lm-eval model wrapper (HFLM) a trial makes is tracked by weakref and must be gone after it. RSS
must grow by less than half of what keeping one pruned model per trial after warm-up would add
(the sum of the pruned models' sizes, from their reported parameter counts: ~110 MB in fp32), which
catches a leak that holds the weights without holding those objects.
"""

from __future__ import annotations

import ctypes
import gc
import weakref

import pytest

from conftest import save_tiny_model
from glu_ray.trials.stop_rule import StopRule
from glu_ray.trials.config import EvalSpec, TrialConfig
from glu_ray.vocab import PARAMS_KEPT
from glu_ray.models.tiny import tiny_corpus
from glu_ray.pruning.widths import Width

pytestmark = [pytest.mark.faults, pytest.mark.slow]
WIDTHS = (896, 768, 640, 512, 384)
# Warm-up: one trial at each width. The first trial at a new width sizes buffers and kernel caches
# (oneDNN's JIT primitives for bf16 among them) that later trials at that width reuse: in a bf16
# process the first pass grew RSS ~10 MB, the second pass under half of that.
TRIALS, WARMUP = 3 * len(WIDTHS), len(WIDTHS)


def rss_mb() -> float:
    """Resident MB once glibc has handed its freed heap pages back (malloc_trim): what a trial still
    holds, not what the allocator keeps cached. Without it the count moved with the process's
    history: a clone without ../shared (other tests skipped before this one) grew 42 MB against 28."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS as it is
        pass
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_fifteen_trials_in_one_process_release_their_models(tmp_path, monkeypatch):
    import ray.tune
    from lm_eval.models.huggingface import HFLM

    import glu_ray.sweep.trial as trainable

    model_dir = save_tiny_model(tmp_path / "m", hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                num_attention_heads=4, num_key_value_heads=2)
    text = tmp_path / "ppl.txt"
    text.write_text(tiny_corpus(20, seed=3))
    reports, alive, element_bytes = [], {"model": [], "tokenizer": [], "lm-eval wrapper": []}, []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **_: reports.append(metrics))
    real_load, real_hflm_init = trainable.load_model, HFLM.__init__

    def tracked_load(*args, **kwargs):
        model, tok = real_load(*args, **kwargs)
        alive["model"].append(weakref.ref(model))
        alive["tokenizer"].append(weakref.ref(tok))
        element_bytes.append(next(model.parameters()).element_size())
        return model, tok

    def tracked_hflm_init(self, *args, **kwargs):
        real_hflm_init(self, *args, **kwargs)
        alive["lm-eval wrapper"].append(weakref.ref(self))

    monkeypatch.setattr(trainable, "load_model", tracked_load)
    monkeypatch.setattr(HFLM, "__init__", tracked_hflm_init)
    ev = EvalSpec(suite="tiny", tasks=("tiny_mc",), limit=4, batch_size=4, ppl_text=str(text))
    rss = []
    for i in range(TRIALS):
        width = WIDTHS[i % len(WIDTHS)]
        cfg = TrialConfig(model=str(model_dir), model_name="m", metric=("maw", "vow", "pon")[i % 3],
                          width=Width(width, 1024, 256), num_params=0, variant="base", eval=ev, stop=StopRule(threshold=1e9),
                          baseline_ppl=None, ranking_cache=str(tmp_path / "rankings"))
        trainable.run_trial({"trial": cfg.to_dict()})
        gc.collect()
        rss.append(rss_mb())
    assert len(reports) == 2 * TRIALS and all(r["status"] in ("running", "completed") for r in reports)
    for kind, refs in alive.items():
        assert len(refs) == TRIALS, f"{len(refs)} {kind}s made in {TRIALS} trials"
        assert all(ref() is None for ref in refs), f"a trial's {kind} outlived it"
    # What keeping one pruned model per trial after warm-up would add: their weights, as pruned.
    pruned_mb = [r[PARAMS_KEPT] * b / 2**20 for r, b in zip(reports[::2], element_bytes)]
    bound = sum(pruned_mb[WARMUP:]) / 2
    growth = max(rss[WARMUP:]) - rss[WARMUP - 1]
    print(f"RSS MB per trial: {[round(x) for x in rss]}; growth after warm-up {growth:.1f} MB; "
          f"pruned models {[round(x, 1) for x in pruned_mb]} MB, bound {bound:.0f} MB")
    assert growth < bound, f"RSS grew {growth:.0f} MB over {TRIALS - WARMUP} trials (bound {bound:.0f}): {[round(x) for x in rss]}"
