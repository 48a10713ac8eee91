"""Results from files -> the tidy table (analysis.tidy): folders of lm-eval ``--output_path`` JSON
(with ``--log_samples``, the item scores too, so their intervals pair items).
The study's published tables are read by analysis.published, MLflow sweeps by analysis.mlflow_io."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.benchmarks import BenchMeta, benchmark_meta
from analysis.mlflow_io import from_mlflow
from analysis.published import from_published
from analysis.tidy import BASELINE, RunInfo, number, size_label, tidy_frame, tidy_rows
from glu_ray.errors import GluRayError
from glu_ray.evaluation.harness import item_scores
from glu_ray.vocab import metric_key, split_lm_eval_key

__all__ = ["from_lm_eval", "from_mlflow", "from_published"]


# ---------------------------------------------------------------- lm-eval output files

# Architecture fields shared by a model and every width-pruned copy of it: how a pruned folder
# finds its baseline without trusting folder names.
_FINGERPRINT = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class _Evaluated:
    results: dict  # lm-eval's "results": task -> {"acc,none": ..., "acc_stderr,none": ...}
    folder: Path  # the local model folder lm-eval loaded (``pretrained=``)
    config: dict  # its config.json
    prune: dict  # its glu_ray_prune.json (PruneReport), {} for an unpruned model
    instruct: bool  # evaluated with a chat template
    samples: dict  # what lm-eval's --log_samples wrote beside it: task -> its samples ({} without)
    group_subtasks: dict  # group -> its subtasks, as lm-eval wrote them


def _pretrained(doc: Mapping) -> str | None:
    args = doc.get("config", {}).get("model_args") or {}
    if isinstance(args, str):  # "pretrained=/path,dtype=float32"
        args = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    return args.get("pretrained")


def _read_evaluated(path: Path) -> _Evaluated | None:
    doc = json.loads(path.read_text())
    folder = Path(_pretrained(doc) or "")
    if "results" not in doc or not (folder / "config.json").is_file():
        return None  # not lm-eval output, or a hub model whose architecture is not on disk
    prune_file = folder / "glu_ray_prune.json"
    prune = json.loads(prune_file.read_text()) if prune_file.is_file() else {}
    return _Evaluated(doc["results"], folder, json.loads((folder / "config.json").read_text()),
                      prune, bool(doc.get("chat_template")), _samples(path), doc.get("group_subtasks") or {})


def _samples(results: Path) -> dict[str, list[dict]]:
    """lm-eval's ``samples_<task>_<date>.jsonl`` files written with ``results_<date>.json`` (--log_samples)."""
    date = results.stem.removeprefix("results_")
    out = {}
    for path in results.parent.glob(f"samples_*_{date}.jsonl"):
        task = path.name.removeprefix("samples_").removesuffix(f"_{date}.jsonl")
        out[task] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def _items(run: _Evaluated, values: Mapping[str, float], meta: Mapping[str, BenchMeta]) -> dict[str, dict]:
    """Benchmark -> its item scores, from the run's logged samples (harness.item_scores decides
    which metrics are means over items and checks they average to the reported score)."""
    out = {"samples": run.samples, "group_subtasks": run.group_subtasks}
    return {b.name: scores for b in meta.values() if run.samples and math.isfinite(values.get(b.key, math.nan))
            and (scores := item_scores(b.task or b.name, b.metric, b.filter, out, values[b.key]))}


def from_lm_eval(folder: str | Path) -> pd.DataFrame:
    """Every ``results*.json`` under ``folder`` whose model is a local folder (its config.json and,
    for a model pruned by glu-ray, glu_ray_prune.json give sizes, method and width)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GluRayError(f"lm-eval results folder not found: {folder}")
    files = sorted(folder.rglob("results*.json"))
    runs = [e for e in map(_read_evaluated, files) if e is not None]
    if not runs:
        raise GluRayError(f"no usable lm-eval results under {folder} ({len(files)} results*.json; "
                          "each needs config.model_args pretrained=<local model folder>)")
    families = _families(runs)
    meta = benchmark_meta()
    by_task = {b.task or b.name: b.name for b in meta.values()}  # lm-eval task -> benchmark name
    rows = []
    for run in runs:
        values = {}
        for task, metrics in run.results.items():
            for key, value in metrics.items():
                values[metric_key(by_task.get(task, task), *split_lm_eval_key(key))] = number(value)
        rows += tidy_rows(_lm_eval_info(run, *families[_fingerprint(run)]), values, meta, items=_items(run, values, meta))
    return tidy_frame(rows)


def _fingerprint(run: _Evaluated) -> tuple:
    return tuple(run.config.get(k) for k in _FINGERPRINT)


def _families(runs: list[_Evaluated]) -> dict[tuple, tuple[str, float]]:
    """fingerprint -> (model name, unpruned parameter count): the unpruned folder's name when
    one was evaluated, the count from any glu_ray_prune.json (params_before)."""
    out: dict[tuple, tuple[str, float]] = {}
    for run in sorted(runs, key=lambda r: bool(r.prune)):  # unpruned folders name the family
        name, params = out.get(_fingerprint(run), (run.folder.name, math.nan))
        out[_fingerprint(run)] = (name, run.prune.get("params_before", params))
    return out


def _lm_eval_info(run: _Evaluated, model: str, num_params: float) -> RunInfo:
    hidden, inter = run.config["hidden_size"], run.config["intermediate_size"]
    p = run.prune
    return RunInfo(
        model=model,
        size=size_label(num_params),
        variant="instruct" if run.instruct else "base",
        method=p.get("metric", BASELINE),
        expansion_ratio=p.get("expansion_ratio", inter / hidden),
        pruning_pct=p.get("pruning_pct", 0.0),
        width=p.get("width", inter),
    )
