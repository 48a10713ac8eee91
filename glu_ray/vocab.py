"""Metric and run names, built in one place so evaluation, tracking and analysis agree.

MLflow keys allow letters, digits, ``_ - . / `` and spaces, never lm-eval's commas:
lm-eval's ``results["mmlu"]["acc,none"]`` becomes ``mmlu/acc``; a non-default filter is kept as a
suffix (``gsm8k_cot/exact_match.strict-match``); stderrs end in ``_stderr``.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def safe(text: str) -> str:
    """Replace anything MLflow rejects in a key with '_'."""
    return _UNSAFE.sub("_", text)


def metric_key(benchmark: str, metric: str, filter_name: str = "none") -> str:
    """``mmlu/acc``, ``mmlu/acc_stderr``, ``gsm8k_cot/exact_match.flexible-extract``."""
    suffix = "" if filter_name in ("none", "") else f".{filter_name}"
    return safe(f"{benchmark}/{metric}{suffix}")


def split_lm_eval_key(key: str) -> tuple[str, str]:
    """lm-eval's ``"acc,none"`` -> ("acc", "none"); ``"acc_stderr,none"`` -> ("acc_stderr", "none")."""
    metric, _, filter_name = key.partition(",")
    return metric, filter_name or "none"




def ratio_label(ratio: float) -> str:
    """``2.4x``: two decimals at most, no trailing zeros."""
    return f"{ratio:.2f}".rstrip("0").rstrip(".") + "x"


def trial_name(model_name: str, metric: str | None, ratio: float | None) -> str:
    """Readable run name: ``Llama-3.2-1B/maw/2.4x``; the unpruned baseline is ``<model>/baseline``."""
    short = model_name.rstrip("/").split("/")[-1]
    if metric is None or ratio is None:
        return f"{short}/baseline"
    return f"{short}/{metric}/{ratio_label(ratio)}"


# -- efficiency stage (glu_ray/efficiency): ``eff/<quantity>``, per batch ``eff/b8/<quantity>`` ----
PARAMS_TOTAL, PARAMS_MLP, WEIGHTS_MB = "params", "params_mlp", "weights_mb"
PREFILL_TOK_S, DECODE_TOK_S = "prefill_tok_s", "decode_tok_s"
# Per second of the process's CPU time, CPU devices only: on a shared machine, waiting for a core
# inflates wall-clock seconds, CPU seconds much less.
PREFILL_CPU_TOK_S, DECODE_CPU_TOK_S = "prefill_tok_per_cpu_s", "decode_tok_per_cpu_s"
PEAK_MEM_MB, PEAK_MEM_DELTA_MB = "peak_mem_mb", "peak_mem_delta_mb"
ENERGY_J, ENERGY_J_PER_TOK = "energy_j", "energy_j_per_tok"  # absent, never 0, where no counter exists
ANSWER_TOKENS, ANSWER_TOKENS_MEDIAN = "answer_tokens", "answer_tokens_median"  # mean / median until EOS
ANSWER_CAPPED, ANSWER_LATENCY_S = "answer_capped_frac", "answer_latency_s"
EFFICIENCY_SECONDS = "seconds"
SPREAD = "_spread"  # suffix: (max - min) / median of the repeats


def efficiency_key(quantity: str, batch: int | None = None) -> str:
    """``eff/params``, ``eff/b1/decode_tok_s``, ``eff/b1/decode_tok_s_spread``."""
    return safe(f"eff/{quantity}" if batch is None else f"eff/b{batch}/{quantity}")


def is_efficiency_key(key: str) -> bool:
    return key.startswith("eff/")
