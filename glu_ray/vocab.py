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
