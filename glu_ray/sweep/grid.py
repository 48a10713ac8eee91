"""A sweep's grid as data: models x importance metrics x target widths, checked before any trial.

``build_trials`` reads only configs (no weights), so a bad grid (unknown model path, metric or
suite, a ratio above the model's native one) fails in seconds, before Ray starts anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from glu_ray.efficiency.spec import EfficiencySpec
from glu_ray.errors import GluRayError
from glu_ray.models.fetch import resolve_model_source
from glu_ray.models.loading import check_glu_config, param_count
from glu_ray.models.precision import check_dtype
from glu_ray.pruning.bias_compensation import check_supported
from glu_ray.pruning.calibration import CalibrationSpec, calibration_documents
from glu_ray.pruning.importance import get_metric
from glu_ray.pruning.widths import TargetWidth, Width, resolve_width
from glu_ray.recovery.spec import RecoverySpec
from glu_ray.trials.config import EvalSpec, TrialConfig
from glu_ray.trials.stop_rule import CONTROL_METRIC, StopRule
from glu_ray.sweep.items import ItemsByPower
from glu_ray.sweep.width_search import WidthSearch
from glu_ray.vocab import BASELINE, method_name


@dataclass(frozen=True)
class ModelSpec:
    source: str  # local folder or hub id
    suite: str  # "base" for base models, "instruct" for chat models: the grid says which
    revision: str | None = None


@dataclass(frozen=True)
class SweepGrid:
    models: tuple[ModelSpec, ...]
    metrics: tuple[str, ...]
    targets: tuple[TargetWidth, ...]
    eval: EvalSpec = field(default_factory=EvalSpec)
    stop: StopRule = field(default_factory=StopRule)
    dtype: str | None = None  # torch dtype trials load the model in (None/auto: glu_ray/models/precision.py)
    seed: int = 0
    control_seeds: int = 1  # random pruning (the control) runs at every width with seeds seed, seed+1, ...
    trust_remote_code: bool = False
    efficiency: EfficiencySpec | None = None  # measure every completed trial (--measure-efficiency)
    calibration: CalibrationSpec | None = None  # what data-driven metrics (and bias compensation) read
    bias_compensation: bool = False  # every pruned trial: the pruned neurons' mean becomes a bias
    recovery: RecoverySpec | None = None  # heal every pruned trial (baselines have nothing to heal)
    widths: WidthSearch | None = None  # --widths auto: widths found from stage 0 (targets then unused)
    power: ItemsByPower | None = None  # --items-by-power: per-task limits from a pilot of each baseline
    # --stage0-only: these metrics' pruned trials run stage 0 alone (ranking, pruning, the fast
    # perplexity, the stop rule) and complete there; every other trial, baselines always, runs in full.
    stage0_only: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    source: str
    name: str
    hidden: int
    intermediate: int
    num_params: int


def inspect_model(spec: ModelSpec, trust_remote_code: bool = False, load_config=check_glu_config) -> ModelInfo:
    """Sizes from the model's config (never its name); parameter count from a meta-device build.

    A fetched alias (``smollm2``) is resolved here, once: trials get the cached folder, and runs are
    named after it (``SmolLM2-135M-Instruct``), not after the alias.
    """
    from transformers import AutoModelForCausalLM  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)

    source = resolve_model_source(spec.source)
    config = load_config(source, trust_remote_code=trust_remote_code, revision=spec.revision)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    name = source.rstrip("/").split("/")[-1]
    return ModelInfo(source, name, config.hidden_size, config.intermediate_size, param_count(skeleton))


def build_trials(grid: SweepGrid, load_config=check_glu_config,
                 read_data: bool = True) -> tuple[list[TrialConfig], list[TrialConfig]]:
    """(baselines, pruned): one unpruned baseline per model, shared by all its metrics.

    ``load_config(source, trust_remote_code=...)`` reads (and checks) a model's config.
    ``read_data=False`` (``--estimate``, which runs nothing) skips reading the calibration text.
    """
    check_dtype(grid.dtype)
    if grid.control_seeds < 1:
        raise GluRayError(f"control seeds must be at least 1 (got {grid.control_seeds})")
    _check_calibration(grid, read_data)
    _check_stage0_only(grid)
    evals = {spec: _eval_for(grid, spec) for spec in grid.models}
    for ev in evals.values():
        ev.load_suite()  # checked (and cached) before any model config is read
        _check_disjoint(grid.recovery, ev)
    baselines, pruned = [], []
    for spec in grid.models:
        info = inspect_model(spec, grid.trust_remote_code, load_config)
        if grid.bias_compensation:
            check_supported(load_config(info.source, trust_remote_code=grid.trust_remote_code))
        widths = set() if grid.widths else {resolve_width(t, info.intermediate, info.hidden) for t in grid.targets}
        native = Width(info.intermediate, info.intermediate, info.hidden)
        baselines.append(_trial(grid, spec, evals[spec], info, None, native))
        pruned += [_trial(grid, spec, evals[spec], info, m, w, seed) for m in grid.metrics
                   for w in sorted(widths, key=lambda w: w.width, reverse=True) if w.width < info.intermediate
                   for seed in seeds_for(grid, m)]
    return baselines, pruned


def _check_calibration(grid: SweepGrid, read_data: bool) -> None:
    """Data-driven metrics and bias compensation need calibration text, readable before Ray starts."""
    data_driven = [m for m in grid.metrics if get_metric(m).needs_calibration]
    if grid.calibration is None and (data_driven or grid.bias_compensation):
        why = f"metric {data_driven[0]!r} is data-driven" if data_driven else "bias compensation"
        raise GluRayError(f"{why}: it needs calibration text (--calibration wikitext or --calibration FILE)")
    if read_data and grid.calibration is not None and (data_driven or grid.bias_compensation):
        calibration_documents(grid.calibration)  # offline wikitext, an empty file: fail here


def _check_stage0_only(grid: SweepGrid) -> None:
    """A stage-0-only name is one of the grid's metrics (as named, or as its method, ``flap+bc``)."""
    names = set(grid.metrics) | {method_name(m, grid.bias_compensation) for m in grid.metrics}
    for name in grid.stage0_only:
        if name not in names:
            why = "the baseline always runs in full" if name == BASELINE else f"the grid's metrics are {', '.join(grid.metrics)}"
            raise GluRayError(f"--stage0-only {name!r} is not a metric of this grid ({why})")


def _stage0_only(grid: SweepGrid, metric: str | None) -> bool:
    return metric is not None and bool({metric, method_name(metric, grid.bias_compensation)} & set(grid.stage0_only))


def _check_disjoint(recovery: RecoverySpec | None, ev: EvalSpec) -> None:
    """Healing on the text stage 0 then scores would measure memorisation, not recovery."""
    if recovery is None or ev.ppl_text is None or recovery.data.source != _absolute(ev.ppl_text):
        return
    what = f"the healing text {recovery.data.source} is the stage-0 evaluation text"
    if ev.ppl_max_docs is None:
        raise GluRayError(f"{what}: heal on another file")
    if recovery.data.skip_docs < ev.ppl_max_docs:
        raise GluRayError(f"{what} (its first {ev.ppl_max_docs} documents): skip them (--recover-skip-docs "
                          f"{ev.ppl_max_docs}) or heal on another file")


def _absolute(path: str | None) -> str | None:
    """Local paths made absolute: Ray runs each trial in its own working directory."""
    if path is None or not Path(path).expanduser().exists():
        return path  # a hub id (or nothing) stays as given
    return str(Path(path).expanduser().resolve())


def _eval_for(grid: SweepGrid, spec: ModelSpec) -> EvalSpec:
    return replace(grid.eval, suite=spec.suite, ppl_text=_absolute(grid.eval.ppl_text),
                   tasks_dir=_absolute(grid.eval.tasks_dir))


def seeds_for(grid: SweepGrid, metric: str) -> range:
    """The seeds a metric runs with: the random control's replicates, one for every other metric
    (their rankings are deterministic)."""
    return range(grid.seed, grid.seed + (grid.control_seeds if metric == CONTROL_METRIC else 1))


def _trial(grid: SweepGrid, spec: ModelSpec, ev: EvalSpec, info: ModelInfo, metric: str | None,
           width: Width, seed: int | None = None) -> TrialConfig:
    cfg = TrialConfig(
        model=_absolute(info.source),
        model_name=info.name,
        metric=metric,
        width=width,
        num_params=info.num_params,
        variant="instruct" if ev.load_suite().chat_benchmarks else "base",  # a chat template = instruct
        eval=ev,
        stop=grid.stop,
        dtype=grid.dtype,
        seed=grid.seed if seed is None else seed,
        revision=spec.revision,
        trust_remote_code=grid.trust_remote_code,
        efficiency=grid.efficiency,
        recovery=None if metric is None else grid.recovery,
    )
    return _with_stages(grid, _with_calibration(grid, cfg))


def pruned_at(grid: SweepGrid, baseline: TrialConfig, metric: str, width: int) -> TrialConfig:
    """The pruned trial of ``baseline``'s model with ``metric`` at ``width``, as build_trials makes it
    (--widths auto: widths known only once the search has run)."""
    native = baseline.width
    cfg = replace(baseline, metric=metric, width=Width(width, native.intermediate, native.hidden),
                  recovery=grid.recovery)
    return _with_stages(grid, _with_calibration(grid, cfg))


def _with_calibration(grid: SweepGrid, cfg: TrialConfig) -> TrialConfig:
    if cfg.metric is not None and (grid.bias_compensation or get_metric(cfg.metric).needs_calibration):
        # Only trials that read calibration carry it: a static metric's ranking (and key) stays as it was.
        cfg = replace(cfg, calibration=grid.calibration, bias_compensation=grid.bias_compensation)
    return cfg


def _with_stages(grid: SweepGrid, cfg: TrialConfig) -> TrialConfig:
    """A --stage0-only metric's trial says so in its EvalSpec (and so in its key)."""
    return replace(cfg, eval=replace(cfg.eval, stage0_only=True)) if _stage0_only(grid, cfg.metric) else cfg


# Without a GPU in sight (a CPU-only driver, --estimate on a laptop): an 80 GB GPU, the common
# datacenter size; packing for it is safe on larger ones. --gpu-memory-gb says otherwise.
DEFAULT_GPU_MEMORY_GB = 80.0


def gpu_memory(gb: float | None = None) -> int:
    """Bytes of the GPU trials are packed onto: ``gb`` when given, else the driver's GPU, else
    DEFAULT_GPU_MEMORY_GB. The sweep and --estimate both ask here, so they pack alike."""
    if gb:
        return int(gb * 2**30)
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return int(DEFAULT_GPU_MEMORY_GB * 2**30)


def gpu_fraction(num_params: int, gpu_bytes: int) -> float:
    """Smallest of 1/8, 1/4, 1/2, 1 of a GPU that holds a trial.

    A trial needs bf16 weights (2 bytes/param) about three times over (weights, pruning copies,
    evaluation activations and logits) plus ~4 GB of framework overhead: 1B -> 0.25 and
    3B -> 0.5 of an 80 GB GPU.
    """
    need = 2 * num_params * 3 + 4 * 2**30
    for frac in (0.125, 0.25, 0.5):
        if frac * gpu_bytes >= need:
            return frac
    return 1.0
