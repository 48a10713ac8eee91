"""The tidy table every source produces: a row per (run, benchmark), headline metric only.

Each source (analysis.load, analysis.mlflow_io) only builds a RunInfo and a flat dict of values
keyed like ``glu_ray.vocab.metric_key`` (``mmlu/acc``, ``mmlu/acc_stderr``); ``tidy_rows`` does the rest,
so metric choice, direction and chance are decided in one place (analysis.benchmarks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import pandas as pd

from analysis.benchmarks import BenchMeta
from glu_ray.vocab import BASELINE, NOT_HEALED, TrialStatus

COLUMNS = (
    "model", "size", "variant", "method", "expansion_ratio", "pruning_pct", "width",
    "benchmark", "capability", "score", "stderr", "direction", "chance", "status", "score_name",
    "stderr_source",
    "decode_tok_s", "params", "energy_j_per_tok", "healing",
    "planned_out",  # why the sweep's items plan left this benchmark out of the model's hierarchy ("" : kept)
    "items",  # {item: score} where the source kept the score item by item (a sweep's trials), else None
    "seed",  # the run's pruning seed (the random control's replicates differ by it); NaN where unknown
)
# Run-level costs (analysis.pareto), NaN where the source did not measure them: a sweep run with
# --measure-efficiency has all three (energy only where the device has a counter).
COST_COLUMNS = ("decode_tok_s", "params", "energy_j_per_tok")
__all__ = ["BASELINE", "COLUMNS", "COST_COLUMNS", "RunInfo", "number", "size_label", "tidy_frame", "tidy_rows"]


@dataclass(frozen=True)
class RunInfo:
    """One evaluated model: everything in a tidy row that is not about a benchmark."""

    model: str  # the unpruned model this run starts from; pairs a run with its baseline
    size: str  # parameter count label from the data (``1.24B``), never guessed from a name
    variant: str  # base | instruct
    method: str  # importance metric, or BASELINE for the unpruned model
    expansion_ratio: float
    pruning_pct: float
    width: float  # NaN where the source does not say
    status: str = TrialStatus.COMPLETED.value
    decode_tok_s: float = math.nan  # COST_COLUMNS: the efficiency stage's, batch 1
    params: float = math.nan
    energy_j_per_tok: float = math.nan
    healing: str = NOT_HEALED  # the recovery method a pruned model was healed with (analysis.recovery)
    seed: float = math.nan  # the pruning seed where the source says (a sweep's trials)


def tidy_rows(info: RunInfo, values: Mapping[str, float], meta: Mapping[str, BenchMeta],
          *, keep_missing: bool = False, binomial: bool = False,
          items: Mapping[str, Mapping[str, float]] | None = None) -> list[dict]:
    """Tidy rows for the benchmarks in ``meta`` that ``values`` scores (all of them if keep_missing:
    a trial stopped early still says which benchmarks it never reached). ``binomial``: a missing
    stderr of an accuracy over a known number of items becomes the binomial one, marked as such.
    ``items``: benchmark -> {item: score}, the scores item by item where the source kept them."""
    rows = []
    for bench in meta.values():
        score = number(values.get(bench.key))
        if math.isnan(score) and not keep_missing:
            continue
        stderr, source = number(values.get(bench.stderr_key)), "reported"
        if math.isnan(stderr):
            stderr = bench.binomial_stderr(score) if binomial else math.nan
            source = "none" if math.isnan(stderr) else f"binomial (n={bench.items})"
        rows.append({
            **asdict(info),
            "benchmark": bench.name,
            "capability": bench.capability,
            "score": score,
            "stderr": stderr,
            "stderr_source": source,
            "direction": bench.direction,
            "chance": bench.chance,
            "score_name": bench.key.partition("/")[2],
            "items": (items or {}).get(bench.name),
        })
    return rows


def number(value) -> float:
    """Published tables write ``N/A`` and empty cells; both mean 'not measured'."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def tidy_frame(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    # sources without an items plan keep all ("" : kept; a column of NaN alone would be float)
    return df.assign(planned_out=[v if isinstance(v, str) else "" for v in df["planned_out"]])


def ratio_key(df: pd.DataFrame) -> pd.Series:
    """Each row's expansion ratio rounded to the fewest decimals, at least 2 (2.13x, as the study
    writes them), that still tell its model's widths apart: on a small model one neuron moves the
    ratio by less than 0.01 (SmolLM2-135M: 1/576), and two widths must not become one point."""
    out = df["expansion_ratio"].round(2)
    for _, ratios in df.groupby("model", sort=False)["expansion_ratio"]:
        distinct = ratios.round(6).nunique()
        decimals = next((d for d in range(2, 6) if ratios.round(d).nunique() == distinct), 6)
        out.loc[ratios.index] = ratios.round(decimals)
    return out


def size_label(num_params: float) -> str:
    """``1235814400`` -> ``1.24B``; NaN -> ``?``."""
    if not num_params or math.isnan(num_params):
        return "?"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if num_params >= scale:
            return f"{num_params / scale:.3g}{unit}"
    return f"{int(num_params)}"


RUN_KEY = ["model", "variant", "method", "expansion_ratio", "healing", "seed"]
UNFINISHED = [*RUN_KEY, "width", "status", "scored"]


def finished(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows of runs that finished: completed, or stopped as catastrophic; one row per run that
    did not, with the benchmarks it had scored; a run that scored nothing has no row to list). A
    trial that failed or was cut off while running scored only its first stages: counted, it would
    end some curves at a width the others never reach and stretch their ratio range, so the
    analyses read finished runs only and the report lists the rest."""
    done = df["status"].map(lambda s: TrialStatus(s).final).astype(bool)
    rest = df[~done]
    key_cols = [c for c in RUN_KEY if c in df]  # a hand-built table may lack healing
    rows = [{**dict(zip(key_cols, key)), "width": grp["width"].iloc[0], "status": grp["status"].iloc[0],
             "scored": ", ".join(grp.loc[grp["score"].notna(), "benchmark"]) or "nothing"}
            for key, grp in rest.groupby(key_cols, sort=True, dropna=False)]
    return df[done].reset_index(drop=True), pd.DataFrame(rows, columns=UNFINISHED)
