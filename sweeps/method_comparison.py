"""The study's neuron-selection experiment: static MAW vs VOW vs PON, and the data-driven metrics
(act, wanda_sp, flap, hybrid: calibration activations), at 10% on Llama-3.2-1B, on one grid.

    python sweeps/method_comparison.py                     # Llama-3.2-1B (GPU; hub)
    python sweeps/method_comparison.py --models /path/to/any/local/llama
    python sweeps/method_comparison.py --preset tiny       # offline, tiny models trained in code
    python sweeps/method_comparison.py --preset tiny --models path/to/a/model/folder
    python sweeps/method_comparison.py --preset tiny --bias-compensation   # every method + FLAP's bias
    python sweeps/method_comparison.py --calibration FILE --calibration-sequences 64   # other calibration

Data-driven metrics calibrate on WikiText-2's train split (128 x 512 tokens; the tiny preset: a
held-out text of its own), once per (model, calibration), shared by every metric that reads it.

Every metric runs to the end (no early stopping): the point is to see how bad the bad ones are.
WikiText-2 and LAMBADA perplexity, as in the study (MAW +51% WikiText PPL; VOW +385%; PON inf).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from glu_ray.trials.config import EvalSpec
from glu_ray.sweep.grid import ModelSpec
from glu_ray.cli.sweep import Preset, main, tiny_models
from glu_ray.trials.stop_rule import StopRule
from glu_ray.models.tiny import tiny_calibration, tiny_eval_text
from glu_ray.pruning.calibration import CalibrationSpec

NO_STOPPING = StopRule(threshold=float("inf"))  # only a non-finite perplexity stops a trial
METHODS = ("maw", "vow", "pon", "act", "wanda_sp", "flap", "hybrid")

STUDY = Preset(
    models=(ModelSpec("meta-llama/Llama-3.2-1B", "base"),),
    metrics=METHODS,
    pruning_pcts=(10,),
    eval=EvalSpec(tasks=("wikitext", "lambada_openai"), batch_size=16),
    stop=NO_STOPPING,
    experiment="method-comparison",
    calibration=CalibrationSpec("wikitext", n_sequences=128, seq_len=512),
)

TINY = Preset(
    models=tiny_models,
    metrics=METHODS,
    pruning_pcts=(10,),
    eval=lambda storage: EvalSpec(suite="tiny", tasks=("tiny_wikitext", "tiny_lambada"), ppl_text=str(tiny_eval_text(storage))),
    stop=NO_STOPPING,
    experiment="method-comparison-tiny",
    calibration=tiny_calibration,
)

if __name__ == "__main__":
    sys.exit(main({"study": STUDY, "tiny": TINY}, description=__doc__))
