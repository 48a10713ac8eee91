"""The study's grid: Llama-3.2 1B/3B, base and Instruct x {MAW, VOW, PON} x 10-60% of MLP neurons.

    python sweeps/full_grid.py                      # the full study (GPU; models from the hub)
    python sweeps/full_grid.py --preset tiny        # offline: tiny models trained in code, 2 CPUs
    python sweeps/full_grid.py --preset tiny --models ../shared/assets/models/stories260K
    python sweeps/full_grid.py --estimate           # projected GPU-hours, runs nothing
    RAY_ADDRESS=auto python sweeps/full_grid.py --storage /shared/glu-ray   # an existing cluster

Percentages, not ratios, so each model gets the study's exact widths (1B: 3.6x..1.6x;
3B: 2.4x..1.07x). Rerun the same command after an interrupt to resume.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from glu_ray.sweep.config import EvalSpec  # noqa: E402
from glu_ray.sweep.grid import ModelSpec  # noqa: E402
from glu_ray.cli.sweep import Preset, main  # noqa: E402
from glu_ray.sweep.stop_rule import StopRule  # noqa: E402
from glu_ray.models.tiny import tiny_calibration, tiny_eval_text, tiny_preset_models  # noqa: E402
from glu_ray.pruning.calibration import CalibrationSpec  # noqa: E402

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
    models=tiny_preset_models,  # two tiny Llamas, trained in code on first use (~10 s each)
    metrics=("maw", "vow", "pon"),
    pruning_pcts=(25, 50, 80),
    stop=StopRule(threshold=20.0),
    eval=lambda storage: EvalSpec(suite="tiny", batch_size=8, ppl_text=str(tiny_eval_text(storage))),
    experiment="tiny",
    calibration=tiny_calibration,  # read only by data-driven metrics: --metrics maw,act,flap,hybrid
)

if __name__ == "__main__":
    sys.exit(main({"study": STUDY, "tiny": TINY}, description=__doc__))
