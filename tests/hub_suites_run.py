"""Run in a subprocess by tests/test_hub_suites.py, with HF_ENDPOINT at the local hub: each suite
given, through glu-ray's run_suite on a hub model, and through lm-eval's own simple_evaluate on the
same model path (lm-eval loads it itself), same tasks, shots, limit, seeds and generation cap.

    python tests/hub_suites_run.py MODEL LIMIT SUITE_OR_YAML...   -> one JSON line: {suite: {ours, lm_eval}}
"""

from __future__ import annotations

import json
import sys
from itertools import groupby

GEN = {"max_gen_toks": 16}  # IFEval's 1280 and GSM8K's 256 new tokens would only cost time here
SEED = 1234
BATCH = 4


def main(model_id: str, limit: int, suites: list[str]) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from glu_ray.evaluation.harness import BOOTSTRAP_ITERS, context_length, flatten, run_suite
    from glu_ray.evaluation.suites import load_suite
    from glu_ray.models.loading import load_model

    # fp32 on both sides: `auto` measures bf16 against fp32 on this CPU, and a loaded machine can tip it.
    model, tok = load_model(model_id, device="cpu", dtype="float32")
    # lm-eval's own index of its task YAMLs, built once: simple_evaluate builds one per call without
    # it (~10 s each on 2 CPUs, parsing ~14k YAML files), which is set-up, not scoring.
    tasks = TaskManager()
    # lm-eval's numbers for a benchmark under the same settings, computed once: `study` extends `base`
    # with the same context and no template, so it shares all but two of its references (MMLU's 57
    # subjects among them). glu-ray's own numbers are still computed for every suite.
    seen: dict[tuple, dict[str, float]] = {}
    out = {}
    for name in suites:
        suite = load_suite(name)
        ours = run_suite(model, tok, suite, limit=limit, batch_size=BATCH, seed=SEED, gen_kwargs=GEN).metrics
        length = context_length(model, suite.max_length)
        theirs: dict[str, float] = {}
        for shots, group in groupby(sorted(suite.benchmarks, key=lambda b: b.num_fewshot), key=lambda b: b.num_fewshot):
            settings = {b: (b, length, suite.apply_chat_template) for b in group}
            group = tuple(b for b, key in settings.items() if key not in seen)
            for key in settings.values():
                theirs.update(seen.get(key, {}))
            if not group:
                continue
            result = simple_evaluate(
                model="hf", model_args=f"pretrained={model_id},max_length={length},dtype=float32,device=cpu",
                tasks=[b.task for b in group], task_manager=tasks, num_fewshot=shots, limit=limit, batch_size=BATCH,
                bootstrap_iters=BOOTSTRAP_ITERS, gen_kwargs=dict(GEN), log_samples=False,
                apply_chat_template=suite.apply_chat_template, fewshot_as_multiturn=suite.apply_chat_template,
                random_seed=SEED, numpy_random_seed=SEED, torch_random_seed=SEED, fewshot_random_seed=SEED)
            for b in group:
                seen[settings[b]] = flatten((b,), result)
                theirs.update(seen[settings[b]])
        out[suite.name] = {"ours": ours, "lm_eval": theirs, "benchmarks": list(suite.names)}
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])))
