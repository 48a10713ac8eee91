"""The efficiency stage: what a (pruned) model costs to run, on the device it is on.

``measure_efficiency(model, tokenizer, spec)`` gives parameters and weight bytes (exact), prefill
and decode tokens/s at each batch size with generation forced to ``spec.gen_len`` (speed.py),
peak memory (memory.py) and energy (energy.py) over those runs, and the free-length answer
lengths on the fixed prompt set (answers.py). ``EfficiencyResult.metrics()`` is what a trial
reports (keys from glu_ray.vocab); ``to_dict()`` is the full record, with what each number
measured and why a counter was unavailable, for the trial's ``efficiency.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from torch import nn

from glu_ray import vocab as V
from glu_ray.efficiency.answers import AnswerLengths, load_prompts, measure_answers
from glu_ray.efficiency.spec import EfficiencySpec
from glu_ray.efficiency.speed import Throughput, measure_throughput
from glu_ray.models.loading import glu_layers, param_count


@dataclass(frozen=True)
class EfficiencyResult:
    device: str
    dtype: str
    params: int
    params_mlp: int
    weight_bytes: int  # parameter bytes as stored (dtype-exact)
    throughput: tuple[Throughput, ...]  # one per batch size
    answers: AnswerLengths | None  # None when the spec skips them
    seconds: float  # the whole stage

    def metrics(self) -> dict[str, float]:
        """Numbers only, MLflow-safe keys. An unavailable counter leaves its keys out (never 0)."""
        key = V.efficiency_key
        out = {key(V.PARAMS_TOTAL): float(self.params), key(V.PARAMS_MLP): float(self.params_mlp),
               key(V.WEIGHTS_MB): self.weight_bytes / 2**20, key(V.EFFICIENCY_SECONDS): self.seconds}
        for t in self.throughput:
            stats = [(V.PREFILL_TOK_S, t.prefill_tok_s), (V.DECODE_TOK_S, t.decode_tok_s)]
            if self.device == "cpu":
                stats += [(V.PREFILL_CPU_TOK_S, t.prefill_cpu_tok_s), (V.DECODE_CPU_TOK_S, t.decode_cpu_tok_s)]
            for name, stat in stats:
                out[key(name, t.batch)] = stat.median
                out[key(name + V.SPREAD, t.batch)] = stat.spread
            if t.memory.available:
                out[key(V.PEAK_MEM_MB, t.batch)] = t.memory.peak_mb
                out[key(V.PEAK_MEM_DELTA_MB, t.batch)] = t.memory.delta_mb
            if t.energy.available:
                out[key(V.ENERGY_J, t.batch)] = t.energy.joules
                out[key(V.ENERGY_J_PER_TOK, t.batch)] = t.energy_j_per_tok
        if self.answers is not None:
            a = self.answers
            out |= {key(V.ANSWER_TOKENS): a.mean, key(V.ANSWER_TOKENS_MEDIAN): a.median,
                    key(V.ANSWER_CAPPED): a.capped_frac, key(V.ANSWER_LATENCY_S): a.latency_s}
        return {k: float(v) for k, v in out.items()}

    def to_dict(self) -> dict:
        """Everything, with derived figures and each counter's status and reason."""
        d = asdict(self)
        for row, t in zip(d["throughput"], self.throughput):
            row |= {"generated_tokens": t.generated_tokens, "energy_j_per_tok": t.energy_j_per_tok,
                    "prefill_tok_s_spread": t.prefill_tok_s.spread, "decode_tok_s_spread": t.decode_tok_s.spread}
        if self.answers is not None:
            d["answers"] |= {"mean": self.answers.mean, "median": self.answers.median,
                             "capped_frac": self.answers.capped_frac, "latency_s": self.answers.latency_s}
        return d


def measure_efficiency(model: nn.Module, tokenizer, spec: EfficiencySpec = EfficiencySpec(), *,
                       chat: bool = False, prompts: tuple[str, ...] | None = None) -> EfficiencyResult:
    """Measure ``model`` where it is (device, dtype). ``tokenizer`` is needed for the answer
    lengths only (None with ``spec.answer_max_new_tokens = 0``); ``chat`` applies its chat template."""
    start = time.perf_counter()
    param = next(model.parameters())
    throughput = tuple(measure_throughput(model, batch=b, prompt_len=spec.prompt_len, gen_len=spec.gen_len,
                                          repeats=spec.repeats, seed=spec.seed) for b in spec.batches)
    answers = None
    if spec.answer_max_new_tokens:
        answers = measure_answers(model, tokenizer, (prompts or load_prompts())[: spec.answer_prompts],
                                  max_new_tokens=spec.answer_max_new_tokens, chat=chat)
    return EfficiencyResult(
        device=str(param.device), dtype=str(param.dtype).removeprefix("torch."),
        params=param_count(model),
        params_mlp=sum(p.numel() for t in glu_layers(model) for p in t.mlp.parameters()),
        weight_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        throughput=throughput, answers=answers, seconds=time.perf_counter() - start,
    )
