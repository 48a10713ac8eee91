"""The project's vocabulary in one place: trial statuses, result and MLflow keys, the baseline.

Evaluation, the trial, the ledger, tracking, the CLI and ``analysis/`` all spell these through
this module (tests/test_architecture.py greps the tree for stray spellings).

MLflow keys allow letters, digits, ``_ - . / `` and spaces, never lm-eval's commas:
lm-eval's ``results["mmlu"]["acc,none"]`` becomes ``mmlu/acc``; a non-default filter is kept as a
suffix (``gsm8k_cot/exact_match.strict-match``); stderrs end in ``_stderr``.
"""

from __future__ import annotations

import re
from enum import Enum


class TrialStatus(str, Enum):
    """What a trial's reports, ledger events and MLflow tags say about it.

    A ``str`` enum: it is written to JSON and MLflow as its value and compares equal to it, so a
    ledger written before the enum existed reads back unchanged.
    """

    RUNNING = "running"  # a stage reported, more to come
    COMPLETED = "completed"
    STOPPED = "stopped: catastrophic"  # stage-0 perplexity past the sweep's StopRule (glu_ray/trials/stop_rule.py)
    FAILED = "failed"
    PENDING = "pending"  # no ledger row yet (results table only; never reported by a trial)

    def __str__(self) -> str:
        return self.value

    # Hash as the string it equals (Enum hashes its name), so sets and dicts mix the two.
    __hash__ = str.__hash__

    @property
    def final(self) -> bool:
        """Finished for good: a rerun skips it (a failed trial is retried)."""
        return self in (TrialStatus.COMPLETED, TrialStatus.STOPPED)

    @property
    def stopped(self) -> bool:
        return self is TrialStatus.STOPPED


# The unpruned model, wherever a metric (method) name is expected: trial keys, params, analysis.
BASELINE = "baseline"
# Suffix of a method pruned with FLAP's bias compensation: ``flap+bc`` is its own row everywhere.
BIAS_COMPENSATED = "+bc"


def method_name(metric: str, bias_compensation: bool) -> str:
    """``flap`` or ``flap+bc``: the importance metric plus how the pruned neurons were treated."""
    return metric + (BIAS_COMPENSATED if bias_compensation else "")

# -- result keys a trial reports (and the ledger, MLflow and analysis read) ---------------------
PPL_WORD = "ppl/word_perplexity"  # the stage-0 perplexity early stopping decides on
PPL_BYTE = "ppl/byte_perplexity"
PPL_SECONDS = "ppl/seconds"
PPL_RATIO = "ppl/ratio_to_baseline"
PPL_CONTROL_RATIO = "ppl/ratio_to_control"  # over the random-pruning control's at the same width, when measured
TRIAL_SECONDS = "trial/seconds"  # load + prune + evaluation so far
TRIAL_CPU_SECONDS = "trial/cpu_seconds"  # the same span in the trial process's CPU time (a shared machine's fair cost)
PARAMS_KEPT, PRUNE_SECONDS, RANKING_CACHED = "params_kept", "prune_seconds", "ranking_cached"
# The dtype the trial's model computed in (``auto`` resolved: glu_ray/models/precision.py), and the
# bf16/fp32 matmul speed ratio measured on the trial's CPU when that choice was measured.
DTYPE_USED = "dtype_used"
BF16_SPEEDUP = "trial/bf16_speedup"
# Un-namespaced metrics that are ours (Ray adds its own, e.g. time_this_iter_s, pid).
OWN_PLAIN_METRICS = (PARAMS_KEPT, PRUNE_SECONDS, RANKING_CACHED)


def eval_seconds_key(stage: int) -> str:
    return f"eval/seconds_stage{stage}"


# -- identity and bookkeeping every report carries (logged as params, never as metrics) ---------
TRIAL_KEY, MODEL, MODEL_NAME, METRIC = "trial_key", "model", "model_name", "metric"
EXPANSION_RATIO, PRUNING_PCT, WIDTH = "expansion_ratio", "pruning_pct", "width"
STAGE, STATUS = "stage", "status"
NODE_ID = "node_id"  # the Ray node a trial's attempt ran on (a cluster's nodes may share one IP)
IDENTITY = (TRIAL_KEY, MODEL, MODEL_NAME, METRIC, EXPANSION_RATIO, PRUNING_PCT, WIDTH)
BOOKKEEPING = (STAGE, STATUS, DTYPE_USED, NODE_ID)
# --widths auto: how a trial's width was chosen (params of the trial's run; glu_ray/sweep/width_search.py)
WIDTH_TARGET_RATIO, WIDTH_SEARCH_STEPS, WIDTH_SEARCH_RATIO = "width_target_ratio", "width_search_steps", "width_search_ratio"

# -- MLflow tags -----------------------------------------------------------------------------
ROLE_TAG, STATUS_TAG, KEY_TAG, ERROR_TAG = "glu_ray.role", "glu_ray.status", "glu_ray.trial_key", "glu_ray.error"
TRIAL_CONFIG_TAG = "glu_ray.trial_config"  # the TrialConfig as JSON: analysis reads it typed
REPORT_TAG = "glu_ray.report"
NODE_TAG = "glu_ray.node_id"  # the trial run's NODE_ID
ROLE_SWEEP, ROLE_TRIAL = "sweep", "trial"
# The MLflow UI restores a runs-table view (its columns) from the experiment tag
# ``mlflow.sharedViewState.<key>`` when the URL says ``?viewStateShareKey=<key>``.
RUNS_VIEW_KEY = "glu-ray"
RUNS_VIEW_TAG = f"mlflow.sharedViewState.{RUNS_VIEW_KEY}"


def role_filter(role: str) -> str:
    """MLflow search filter for the sweep's parent run or its trial runs."""
    return f"tags.`{ROLE_TAG}` = '{role}'"


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def safe(text: str) -> str:
    """Replace anything MLflow rejects in a key with '_'."""
    return _UNSAFE.sub("_", text)


def metric_key(benchmark: str, metric: str, filter_name: str = "none") -> str:
    """``mmlu/acc``, ``mmlu/acc_stderr``, ``gsm8k_cot/exact_match.flexible-extract``."""
    suffix = "" if filter_name in ("none", "") else f".{filter_name}"
    return safe(f"{benchmark}/{metric}{suffix}")


# Namespaces only the trial writes: stage 0 (ppl/), timings (trial/, eval/), the efficiency stage (eff/).
OWN_NAMESPACES = ("ppl", "trial", "eval", "eff")


def is_own_metric(key: str, benchmark_keys: frozenset[str] | set[str] = frozenset()) -> bool:
    """A key the trial reported, not one Ray added (time_this_iter_s, pid): one of our namespaces,
    the plain ones above, or a benchmark's (``mmlu/acc``, ``mmlu/acc_stderr``) whose prefix is in
    ``benchmark_keys``."""
    if key.startswith(RECOVER):
        return True
    if (before := unhealed_key(key)) is not None:  # the same metric, after healing
        return is_own_metric(before, benchmark_keys)
    space = key.partition("/")[0] if "/" in key else None
    return key in OWN_PLAIN_METRICS or space in OWN_NAMESPACES or space in benchmark_keys


def split_lm_eval_key(key: str) -> tuple[str, str]:
    """lm-eval's ``"acc,none"`` -> ("acc", "none"); ``"acc_stderr,none"`` -> ("acc_stderr", "none")."""
    metric, _, filter_name = key.partition(",")
    return metric, filter_name or "none"


def ratio_label(ratio: float) -> str:
    """``2.4x``: two decimals at most, no trailing zeros."""
    return f"{ratio:.2f}".rstrip("0").rstrip(".") + "x"


def trial_name(model_name: str, metric: str | None, ratio: float | None, seed: int = 0) -> str:
    """Readable run name: ``Llama-3.2-1B/maw/2.4x``; the unpruned baseline is ``<model>/baseline``;
    a replicate with another seed (the random control's) ends in ``/seed<N>``."""
    short = model_name.rstrip("/").split("/")[-1]
    if metric is None or ratio is None:
        return f"{short}/{BASELINE}"
    return f"{short}/{metric}/{ratio_label(ratio)}" + (f"/seed{seed}" if seed else "")


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


# Healing (glu_ray.recovery): a trial that heals its pruned model reports the healed model's
# evaluation under ``healed/`` (``healed/mmlu/acc``, ``healed/ppl/word_perplexity``) next to the
# pruned model's plain keys, and the healing's cost and loss under ``recover/``.
HEALED = "healed/"
RECOVER = "recover/"
NOT_HEALED = "none"  # analysis' ``healing`` of a model as pruning left it (and of the baseline)


def healed_key(key: str) -> str:
    """``mmlu/acc`` -> ``healed/mmlu/acc``: the same metric, measured after healing."""
    return HEALED + key


def unhealed_key(key: str) -> str | None:
    """``healed/mmlu/acc`` -> ``mmlu/acc``; None for a key that is not a healed metric."""
    return key[len(HEALED):] if key.startswith(HEALED) else None


def recover_key(name: str) -> str:
    """``seconds`` -> ``recover/seconds``: the healing's own cost and loss."""
    return safe(RECOVER + name)
