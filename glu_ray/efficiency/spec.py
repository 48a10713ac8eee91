"""What the optional efficiency stage measures (``--measure-efficiency``): sizes as typed data.

Kept free of torch and transformers so the trial config (and the sweep driver that builds it)
can carry it without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from glu_ray.errors import GluRayError


@dataclass(frozen=True)
class EfficiencySpec:
    prompt_len: int = 128  # random-token prompt of the throughput runs
    gen_len: int = 64  # tokens every throughput run generates (forced: EOS masked until then)
    batches: tuple[int, ...] = (1, 8)
    repeats: int = 5  # timed runs per batch, after one warm-up; medians and ranges are reported
    answer_max_new_tokens: int = 256  # cap on the free-length answers (0: skip answer lengths)
    answer_prompts: int | None = None  # the first N of the fixed prompt set (None: all), for slow devices
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompt_len < 1 or self.repeats < 1:
            raise GluRayError(f"efficiency prompt_len and repeats must be >= 1 (got {self.prompt_len}, {self.repeats})")
        if self.gen_len < 2:
            raise GluRayError(f"efficiency gen_len must be >= 2: one token comes from the prefill (got {self.gen_len})")
        if not self.batches or min(self.batches) < 1:
            raise GluRayError(f"efficiency batches must be sizes >= 1 (got {self.batches})")
        if self.answer_prompts is not None and self.answer_prompts < 1:
            raise GluRayError(f"answer_prompts must be >= 1, or None for the whole set (got {self.answer_prompts})")
        if self.answer_max_new_tokens < 0:
            raise GluRayError(f"answer_max_new_tokens must be >= 0 (got {self.answer_max_new_tokens})")

    @classmethod
    def from_dict(cls, d: dict) -> "EfficiencySpec":
        return cls(**{**d, "batches": tuple(d["batches"])})

    def with_overrides(self, text: str) -> "EfficiencySpec":
        """``gen_len=16,repeats=3,batches=1/8``: this spec with those fields replaced (the CLI's form)."""
        names = {f.name for f in fields(self)}
        changes: dict = {}
        for item in filter(None, (x.strip() for x in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in names:
                raise GluRayError(f"--efficiency takes key=value pairs of {', '.join(sorted(names))} (got {item!r})")
            try:
                changes[key] = (tuple(int(v) for v in value.split("/")) if key == "batches"
                                else None if value == "all" and key == "answer_prompts" else int(value))
            except ValueError:
                raise GluRayError(f"--efficiency {key} needs a whole number (got {value!r})") from None
        return replace(self, **changes)
