"""What a healing run is asked to do (RecoverySpec) and what it did (RecoveryResult).

Both are frozen and typed: the sweep resolves the flags into a RecoverySpec once, the trial passes
it to ``heal`` and reports the RecoveryResult's ``metrics()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from glu_ray.errors import GluRayError
from glu_ray.pruning.calibration import CalibrationSpec
from glu_ray.recovery.students import STUDENTS


@dataclass(frozen=True)
class RecoverySpec:
    """A fixed token budget: ``steps`` x ``batch_size`` sequences of ``data.seq_len`` tokens.

    ``data`` is a calibration source (glu_ray.pruning.calibration): the same text, sequence length
    and seed that data-driven ranking reads; its ``n_sequences`` is the budget's, set here.
    """

    method: str = "kd"
    steps: int = 20
    batch_size: int = 4
    data: CalibrationSpec = field(default_factory=CalibrationSpec)
    lr: float | None = None  # None: the method's default (students.STUDENTS)
    temperature: float = 2.0  # KL(teacher || student) on logits softened by this; loss scaled by T^2
    warmup: float = 0.1  # share of steps with a linear warm-up; cosine decay after
    seed: int = 0  # the order of the sequences, and LoRA's initialisation
    lora_rank: int = 8
    lora_alpha: int = 16

    def __post_init__(self):
        problems = []
        if self.method not in STUDENTS:
            problems.append(f"method {self.method!r} is not one of {', '.join(STUDENTS)}")
        for name in ("steps", "batch_size", "lora_rank", "lora_alpha"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer (got {getattr(self, name)!r})")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0 (got {self.temperature})")
        if not 0 <= self.warmup < 1:
            problems.append(f"warmup must be in [0, 1) (got {self.warmup})")
        if problems:
            raise GluRayError("recovery: " + "; ".join(problems))
        # The budget decides how many sequences the source must give.
        object.__setattr__(self, "data", replace(self.data, n_sequences=self.steps * self.batch_size))

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else STUDENTS[self.method].lr

    @property
    def tokens(self) -> int:
        """The token budget: every step sees exactly batch_size x seq_len tokens (no padding)."""
        return self.steps * self.batch_size * self.data.seq_len

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RecoverySpec":
        return cls(**{**d, "data": CalibrationSpec(**d["data"])})

    def params(self) -> dict[str, str]:
        """What a tracked run records about its healing."""
        p = {"recover": self.method, "recover_steps": self.steps, "recover_batch_size": self.batch_size,
             "recover_seq_len": self.data.seq_len, "recover_tokens": self.tokens, "recover_lr": self.learning_rate,
             "recover_temperature": self.temperature, "recover_seed": self.seed,
             "recover_text": self.data.source, "recover_skip_docs": self.data.skip_docs}
        if self.method == "lora":
            p.update(recover_lora_rank=self.lora_rank, recover_lora_alpha=self.lora_alpha)
        return {k: str(v) for k, v in p.items()}


@dataclass(frozen=True)
class RecoveryResult:
    method: str
    steps: int
    tokens: int  # tokens the student was trained on
    seconds: float  # the training loop (teacher and student forwards, backward, optimiser)
    peak_memory_mb: float  # GPU: allocator peak during healing; CPU: process peak RSS during healing
    trainable_params: int
    losses: tuple[float, ...]  # KD loss of every step, in order
    lr: float

    @property
    def step_seconds(self) -> float:
        return self.seconds / self.steps

    def metrics(self) -> dict[str, float]:
        """The healing cost and loss, named as the trial reports them (glu_ray.vocab.recover_key)."""
        from glu_ray.vocab import recover_key

        first, last = self.losses[0], self.losses[-1]
        values = {"seconds": self.seconds, "tokens": self.tokens, "steps": self.steps,
                  "step_seconds": self.step_seconds, "tokens_per_second": self.tokens / self.seconds,
                  "peak_memory_mb": self.peak_memory_mb, "trainable_params": self.trainable_params,
                  "loss_first": first, "loss_last": last, "lr": self.lr}
        return {recover_key(k): float(v) for k, v in values.items()}

    def to_dict(self) -> dict:
        return {**asdict(self), "losses": list(self.losses)}
