"""Typed, frozen configuration at the library's boundaries.

Ray Tune passes trials a flat dict; ``TrialConfig.from_dict`` is the only place that dict is
read, so the rest of the library sees typed fields: the width as a ``Width`` (ratio and
percentage are its properties, never stored twice), the suite loaded once per ``EvalSpec``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache

from glu_ray.efficiency.spec import EfficiencySpec
from glu_ray.evaluation.suites import Suite, load_suite
from glu_ray.pruning.calibration import CalibrationSpec
from glu_ray.pruning.widths import Width
from glu_ray.recovery.spec import RecoverySpec
from glu_ray.trials.stop_rule import StopRule
from glu_ray.vocab import (
    BASELINE,
    EXPANSION_RATIO,
    METRIC,
    MODEL,
    MODEL_NAME,
    PRUNING_PCT,
    TRIAL_KEY,
    WIDTH,
    WIDTH_SEARCH_RATIO,
    WIDTH_SEARCH_STEPS,
    WIDTH_TARGET_RATIO,
    method_name,
    trial_name,
)


@dataclass(frozen=True)
class EvalSpec:
    """How a trial evaluates: the suite, lm-eval knobs, and the stage-0 perplexity text."""

    suite: str = "tiny"
    tasks: tuple[str, ...] | None = None  # a subset of the suite's benchmarks
    tasks_dir: str | None = None  # a user's own lm-eval task folder
    limit: int | None = None  # items per task, for quick runs
    # per benchmark, over ``limit``: ((name, items), ...), e.g. sized by power (evaluation/power.py)
    limits: tuple[tuple[str, int], ...] = ()
    batch_size: int = 8
    max_length: int | None = None  # fixed context so perplexities compare across trials
    ppl_text: str | None = None  # stage-0 text: None -> lm-eval's wikitext; or a local file
    ppl_max_docs: int | None = None  # cap on stage-0 documents (a cheap stage stays cheap)
    max_gen_toks: int | None = None  # cap on new tokens of generating tasks (None: the suite's, else each task's)
    # Stage 0 alone, then completed: no lm-eval stage (--stage0-only: a cheap metric's perplexity curve
    # where the budget has no room for its benchmarks). The early-stop rule still applies.
    stage0_only: bool = False

    def load_suite(self) -> Suite:
        """The suite this spec names, with its task subset: loaded (and checked) once per spec."""
        return _suite(self.suite, self.tasks, self.tasks_dir)


@lru_cache(maxsize=64)
def _suite(name: str, tasks: tuple[str, ...] | None, tasks_dir: str | None) -> Suite:
    return load_suite(name, tasks=tasks, tasks_dir=tasks_dir)


@dataclass(frozen=True)
class WidthChoice:
    """--widths auto: the stage-0 ratio this width was searched for, and what the search measured."""

    target_ratio: float
    search_steps: int  # stage-0 probes the bisection took for this target
    search_ratio: float  # the stage-0 ratio to the baseline measured at this width during the search

    def params(self) -> dict:
        return {WIDTH_TARGET_RATIO: self.target_ratio, WIDTH_SEARCH_STEPS: self.search_steps,
                WIDTH_SEARCH_RATIO: self.search_ratio}


@dataclass(frozen=True)
class TrialConfig:
    """One trial: a model pruned with one metric to one width (metric None = unpruned baseline)."""

    model: str
    model_name: str
    metric: str | None
    width: Width  # the width reached, with the model's native sizes (the baseline: width = intermediate)
    num_params: int
    variant: str  # "base" or "instruct", from the suite chosen for the model
    eval: EvalSpec
    stop: StopRule = field(default_factory=StopRule)  # when a pruned trial stops after stage 0
    baseline_ppl: float | None = None
    control_ppl: float | None = None  # the random-pruning control's at this width, when the rule reads it
    dtype: str | None = None  # torch dtype the model loads in (None/auto: chosen where it loads, models/precision.py)
    seed: int = 0
    revision: str | None = None
    trust_remote_code: bool = False
    ranking_cache: str | None = None  # folder shared by trials: one ranking per (model, metric, calibration)
    calibration: CalibrationSpec | None = None  # set only where used: data-driven metric or bias compensation
    bias_compensation: bool = False  # FLAP: the pruned neurons' mean contribution becomes down_proj's bias
    artifact_dir: str | None = None  # the trial writes its files here; the driver logs them to MLflow
    efficiency: EfficiencySpec | None = None  # --measure-efficiency: the stage after evaluation
    recovery: RecoverySpec | None = None  # heal after the pruned evaluation (pruned trials only)
    width_choice: WidthChoice | None = None  # --widths auto: how the width was found (not part of the key)

    @property
    def is_baseline(self) -> bool:
        return self.metric is None

    @property
    def method(self) -> str:
        """The importance metric (``flap+bc`` with bias compensation), or BASELINE for the unpruned
        model: what params and analysis say."""
        return method_name(self.metric, self.bias_compensation) if self.metric else BASELINE

    @property
    def key(self) -> str:
        """Stable identity across reruns: what resume and tracking match on. A trial that uses
        calibration carries its fingerprint: other calibration data is another trial. A healed trial
        is another trial than the same pruning without healing (it reports more), and so is a full
        trial than the same pruning evaluated at stage 0 only (--stage0-only)."""
        calib = f"|calib={self.calibration.fingerprint}" if self.calibration is not None else ""
        heal = f"|{self.recovery.method}:{self.recovery.tokens}" if self.recovery else ""
        seed = f"|seed={self.seed}" if self.seed else ""  # seed 0 keeps the keys ledgers already hold
        stages = "|stage0" if self.eval.stage0_only else ""
        return f"{self.model}|{self.method}|{self.width.width}{calib}{heal}{seed}{stages}"

    @property
    def name(self) -> str:
        metric = None if self.is_baseline else self.method
        return trial_name(self.model_name, metric, None if self.is_baseline else self.width.expansion_ratio,
                          0 if self.is_baseline else self.seed)

    def to_dict(self) -> dict:
        return asdict(self)  # nested: {"width": {...}, "eval": {...}}

    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown trial config keys: {sorted(unknown)}")
        ev = dict(d["eval"])
        if ev.get("tasks") is not None:
            ev["tasks"] = tuple(ev["tasks"])
        ev["limits"] = tuple((name, int(n)) for name, n in ev.get("limits") or ())
        eff = d.get("efficiency")
        calib = CalibrationSpec(**d["calibration"]) if d.get("calibration") else None
        recovery = RecoverySpec.from_dict(d["recovery"]) if d.get("recovery") else None
        choice = WidthChoice(**d["width_choice"]) if d.get("width_choice") else None
        return cls(**{**d, "width": Width(**d["width"]), "eval": EvalSpec(**ev), "stop": StopRule.from_dict(d["stop"]),
                      "calibration": calib, "efficiency": EfficiencySpec.from_dict(eff) if eff else None,
                      "recovery": recovery, "width_choice": choice})

    def identity(self) -> dict:
        """What every report carries, so a result row stands on its own."""
        return {
            TRIAL_KEY: self.key,
            MODEL: self.model,
            MODEL_NAME: self.model_name,
            METRIC: self.method,
            EXPANSION_RATIO: self.width.expansion_ratio,
            PRUNING_PCT: self.width.pruning_pct,
            WIDTH: self.width.width,
        }
