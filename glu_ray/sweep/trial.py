"""The Ray Tune trial: load, rank (cached), prune, evaluate in stages, report after each.

Stage 0 is the fast perplexity; a pruned model the sweep's StopRule (stop_rule.py) calls
catastrophic is stopped there (status ``stopped: catastrophic``). Stage 1 runs the suite's cheap
tasks, stage 2 the rest; a trial of a ``--stage0-only`` metric (EvalSpec.stage0_only) completes
after stage 0 instead. A trial with ``recovery`` then heals the pruned model and runs the
same stages on it (glu_ray.sweep.healing). With ``--measure-efficiency`` a completed trial then
measures what its (healed) model costs to run (glu_ray.efficiency), one stage more. Every report
carries the trial's identity.
"""

from __future__ import annotations

import functools
import os
import time
from functools import lru_cache
from typing import Callable

import torch

from glu_ray.errors import GluRayError
from glu_ray.hub_repos import MODEL, Repo, endpoint, is_hub_id, unreachable
from glu_ray.tracking import artifacts as trial_artifacts
from glu_ray.evaluation.harness import EvalResult, run_suite
from glu_ray.evaluation.meter import Meter
from glu_ray.evaluation.perplexity import fast_perplexity, load_documents
from glu_ray.evaluation.suites import STAGES
from glu_ray.efficiency.measure import measure_efficiency
from glu_ray.trials.config import TrialConfig
from glu_ray.models.loading import check_glu_config, free_memory, load_model, param_count, resolve_dtype
from glu_ray.pruning.prune import prune
from glu_ray.sweep.healing import with_healing
from glu_ray.sweep.progress_log import trial_sink
from glu_ray.sweep.ranking_cache import cached_rank
from glu_ray.vocab import (BF16_SPEEDUP, DTYPE_USED, PARAMS_KEPT, PPL_BYTE, PPL_CONTROL_RATIO, PPL_RATIO, PPL_SECONDS, PPL_WORD,
                           PRUNE_SECONDS, NODE_ID, RANKING_CACHED, STAGE, STATUS, TRIAL_CPU_SECONDS, TRIAL_SECONDS, TrialStatus,
                           eval_seconds_key)


def run_trial(config: dict, last_stage: int | None = None) -> None:
    """Ray Tune function trainable. ``config["trial"]`` is a TrialConfig dict. ``last_stage``: return
    once that stage is reported (a reference run or a width probe: stage 0). The trial ends itself
    rather than be stopped by Tune, whose stop would find this thread still tearing down when it
    reuses the actor (Tune gives it 2 s; past that the next trial aborts)."""
    from ray import tune  # lazy: Tune costs ~5 s at import; the driver imports this module for --estimate too

    cfg = TrialConfig.from_dict(config["trial"])
    start, cpu_start = time.perf_counter(), time.process_time()
    # lm-eval bootstraps some stderrs in a forked multiprocessing pool; forking a threaded Ray
    # worker deadlocks, so bootstrap in-process.
    os.environ.setdefault("DISABLE_MULTIPROC", "1")
    use_assigned_cpus()
    model = tok = None
    try:
        choice, model, tok = load_trial_model(cfg)
        ident = {**cfg.identity(), PARAMS_KEPT: param_count(model), DTYPE_USED: choice.dtype,
                 **({BF16_SPEEDUP: choice.bf16_speedup} if choice.bf16_speedup is not None else {})}
        if not cfg.is_baseline:
            ranking, cached = cached_rank(model, cfg.ranking_cache, cfg.model, cfg.revision, cfg.metric, cfg.seed,
                                          calibration=cfg.calibration, tokenizer=tok, batch_size=cfg.eval.batch_size)
            report = prune(model, ranking, cfg.width, bias_compensation=cfg.bias_compensation)
            ident.update({PARAMS_KEPT: report.params_after, RANKING_CACHED: int(cached), PRUNE_SECONDS: report.seconds})
        trial_artifacts.start(cfg.artifact_dir, model, cfg.width.intermediate)  # logged by the driver at the end
        save_stage = functools.partial(trial_artifacts.add_stage, cfg.artifact_dir)

        def send(stage: int, metrics: dict, status: TrialStatus) -> None:
            elapsed = time.perf_counter() - start  # load + prune + evaluation so far
            tune.report({**ident, **metrics, TRIAL_SECONDS: elapsed, TRIAL_CPU_SECONDS: time.process_time() - cpu_start,
                         STAGE: stage, STATUS: status.value, NODE_ID: _node_id()})

        sink = trial_sink(cfg.name)  # progress lines to the driver's terminal, where it listens
        meter = Meter(sink) if sink else None
        stages = evaluate_stages(cfg, model, tok, on_result=save_stage, meter=meter)
        if cfg.recovery is not None:
            stages = with_healing(cfg, model, tok, stages, functools.partial(evaluate_stages, cfg, tok=tok, meter=meter),
                                  save_stage)
        for stage, metrics, status in stages:
            measure = status is TrialStatus.COMPLETED and cfg.efficiency is not None
            # The evaluation's results are reported (and kept) before the efficiency stage runs.
            send(stage, metrics, TrialStatus.RUNNING if measure else status)
            if measure:
                send(stage + 1, efficiency_stage(cfg, model, tok), status)
            if status is not TrialStatus.RUNNING or stage == last_stage:
                return
    finally:
        del model, tok
        free_memory()


def load_trial_model(cfg: TrialConfig):
    """(dtype choice, model, tokenizer). A hub model whose hub gives no answer (stopped mid-sweep, or
    while this trial loaded) loads from the local Hugging Face cache alone; one the cache lacks fails
    the trial with one line, and a rerun once the hub answers runs it. Left to itself, huggingface_hub
    retries a dead hub ~23 s per file, cached or not, and the trial ends on whatever transformers made
    of the files it could not get ("no usable tokenizer")."""
    repo = Repo(MODEL, cfg.model, cfg.revision) if is_hub_id(cfg.model) else None
    cut_off = repo and unreachable(repo)
    if not cut_off:
        try:
            return _load(cfg, local_files_only=False)
        except Exception:
            if not (cut_off := repo and unreachable(repo)):
                raise
    try:
        return _load(cfg, local_files_only=True)
    except Exception:  # noqa: BLE001 - what the cache lacks: the driver checked the model before Ray started
        raise GluRayError(f"cannot reach the Hugging Face hub at {endpoint()} ({cut_off}) and {cfg.model} is not "
                          "all in the local cache: rerun the same command when the hub answers") from None


def _load(cfg: TrialConfig, local_files_only: bool):
    opts = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code, "local_files_only": local_files_only}
    config = check_glu_config(cfg.model, **opts)  # read once: the dtype's choice and the load share it
    choice = resolve_dtype(config, cfg.dtype)  # measured once per host
    model, tok = load_model(cfg.model, dtype=choice.torch_dtype, config=config, **opts)
    return choice, model, tok


def efficiency_stage(cfg: TrialConfig, model, tok) -> dict[str, float]:
    """--measure-efficiency: the evaluated model, on its own device; the full record goes to the
    trial's efficiency.json, the numbers to the report. Chat models answer through their template."""
    result = measure_efficiency(model, tok, cfg.efficiency, chat=bool(cfg.eval.load_suite().chat_benchmarks))
    trial_artifacts.add_efficiency(cfg.artifact_dir, result.to_dict())
    return result.metrics()


def evaluate_stages(cfg: TrialConfig, model, tok, on_result: Callable[[int, EvalResult], None] | None = None,
                    early_stop: bool = True, meter: Meter | None = None):
    """Yield (stage, metrics, TrialStatus) after each stage; RUNNING until the last.
    ``on_result(stage, result)`` gets each stage's EvalResult before the stage is yielded.
    ``early_stop=False`` (a healed model) runs every stage whatever stage 0 measures. A ``meter``
    counts tokens and requests inside each stage (progress lines)."""
    suite = cfg.eval.load_suite()
    settings = eval_settings(cfg, model)
    max_length = settings["max_length"]
    docs = _documents(cfg.eval.ppl_text, cfg.eval.ppl_max_docs)
    ppl = _with_oom_retry(lambda bs: fast_perplexity(model, tok, docs, max_length=max_length, batch_size=bs,
                                                     meter=meter), cfg.eval.batch_size)
    stage0 = {PPL_WORD: ppl.word_perplexity, PPL_BYTE: ppl.byte_perplexity, PPL_SECONDS: ppl.seconds,
              PPL_RATIO: _ratio(cfg, ppl.word_perplexity)}
    if cfg.control_ppl:
        stage0[PPL_CONTROL_RATIO] = ppl.word_perplexity / cfg.control_ppl
    if early_stop and cfg.stop.decide(ppl.word_perplexity, cfg.baseline_ppl, cfg.control_ppl).stop:  # a baseline: non-finite only
        yield 0, stage0, TrialStatus.STOPPED
        return
    stages = [] if cfg.eval.stage0_only else [s for s in STAGES if suite.stage(s)]  # --stage0-only: none
    yield 0, stage0, TrialStatus.RUNNING if stages else TrialStatus.COMPLETED
    for i, stage in enumerate(stages, start=1):
        result = _with_oom_retry(lambda bs: run_suite(model, tok, suite, stage=stage, limit=cfg.eval.limit,
                                                       limits=dict(cfg.eval.limits), batch_size=bs, meter=meter,
                                                       **settings),
                                 cfg.eval.batch_size)
        last = i == len(stages)
        if on_result:
            on_result(i, result)
        yield i, {**result.metrics, eval_seconds_key(i): result.seconds}, \
            TrialStatus.COMPLETED if last else TrialStatus.RUNNING


def eval_settings(cfg: TrialConfig, model) -> dict:
    """The settings run_suite scores a trial's model with (the pilot of items by power uses them too)."""
    suite = cfg.eval.load_suite()
    return {"max_length": cfg.eval.max_length or suite.max_length or min(model.config.max_position_embeddings, 2048),
            "seed": 1234 + cfg.seed, "gen_kwargs": _gen_kwargs(cfg)}


def _gen_kwargs(cfg: TrialConfig) -> dict | None:
    return {"max_gen_toks": cfg.eval.max_gen_toks} if cfg.eval.max_gen_toks else None


def _ratio(cfg: TrialConfig, ppl: float) -> float:
    return ppl / cfg.baseline_ppl if cfg.baseline_ppl else (1.0 if cfg.is_baseline else float("nan"))


def _with_oom_retry(fn, batch_size: int):
    """Out of GPU memory: free what we can and retry with half the batch, down to 1."""
    while True:
        try:
            return fn(batch_size)
        except torch.OutOfMemoryError:
            if batch_size <= 1:
                raise
            batch_size //= 2
            free_memory()


@lru_cache(maxsize=4)
def _documents(source: str | None, max_docs: int | None) -> tuple[str, ...]:
    docs = load_documents(source)
    return tuple(docs[:max_docs] if max_docs else docs)


def use_assigned_cpus() -> None:
    """torch threads = the CPUs Ray gave this trial, so packed trials do not oversubscribe."""
    try:
        import ray  # lazy, as tune above

        if not ray.is_initialized():  # outside Ray: get_runtime_context() would start (or join) a cluster
            return
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - outside Ray (direct calls in tests): leave torch alone
        return
    if cpus:
        torch.set_num_threads(max(1, int(cpus)))


def _node_id() -> str:
    """The Ray node this attempt runs on (tracking tags the run with it): "" outside Ray."""
    import ray  # lazy, as tune above

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
