"""Typed, frozen configuration at the library's boundaries.

Ray Tune passes trials a flat dict; ``TrialConfig.from_dict`` is the only place that dict is
read, so the rest of the library sees typed fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from glu_ray.vocab import trial_name


@dataclass(frozen=True)
class EvalSpec:
    """How a trial evaluates: the suite, lm-eval knobs, and the stage-0 perplexity text."""

    suite: str = "tiny"
    tasks: tuple[str, ...] | None = None  # a subset of the suite's benchmarks
    tasks_dir: str | None = None  # a user's own lm-eval task folder
    limit: int | None = None  # items per task, for quick runs
    batch_size: int = 8
    max_length: int | None = None  # fixed context so perplexities compare across trials
    ppl_text: str | None = None  # stage-0 text: None -> lm-eval's wikitext; or a local file
    ppl_max_docs: int | None = None  # cap on stage-0 documents (a cheap stage stays cheap)


@dataclass(frozen=True)
class TrialConfig:
    """One trial: a model pruned with one metric to one width (metric None = unpruned baseline)."""

    model: str
    model_name: str
    metric: str | None
    width: int
    expansion_ratio: float
    pruning_pct: float
    hidden_size: int
    intermediate_size: int
    num_params: int
    variant: str  # "base" or "instruct", from the suite chosen for the model
    eval: EvalSpec
    threshold: float = 3.0  # stop when stage-0 perplexity > threshold x baseline
    baseline_ppl: float | None = None
    seed: int = 0
    revision: str | None = None
    trust_remote_code: bool = False
    ranking_cache: str | None = None  # folder shared by trials: one ranking per (model, metric)
    artifact_dir: str | None = None  # the trial writes its files here; the driver logs them to MLflow
    fault: str | None = None  # tests only: inject a named fault (see trainable.FAULTS)

    @property
    def is_baseline(self) -> bool:
        return self.metric is None

    @property
    def key(self) -> str:
        """Stable identity across reruns: what resume and tracking match on."""
        return f"{self.model}|{self.metric or 'baseline'}|{self.width}"

    @property
    def name(self) -> str:
        return trial_name(self.model_name, self.metric, None if self.is_baseline else self.expansion_ratio)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eval"] = asdict(self.eval)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown trial config keys: {sorted(unknown)}")
        ev = dict(d["eval"])
        if ev.get("tasks") is not None:
            ev["tasks"] = tuple(ev["tasks"])
        return cls(**{**d, "eval": EvalSpec(**ev)})

    def identity(self) -> dict:
        """What every report carries, so a result row stands on its own."""
        return {
            "trial_key": self.key,
            "model": self.model,
            "model_name": self.model_name,
            "metric": self.metric or "none",
            "expansion_ratio": round(self.expansion_ratio, 4),
            "pruning_pct": round(self.pruning_pct, 3),
            "width": self.width,
        }
