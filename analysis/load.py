"""Results from files -> the tidy table (analysis.tidy): the reference study's published tables
and folders of lm-eval ``--output_path`` JSON. MLflow sweeps are read by analysis.mlflow_io."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.benchmarks import benchmark_meta, published_meta
from analysis.mlflow_io import from_mlflow
from analysis.tidy import BASELINE, RunInfo, number, size_label, tidy_frame, tidy_rows
from glu_ray.errors import GluRayError
from glu_ray.vocab import metric_key, split_lm_eval_key

__all__ = ["from_lm_eval", "from_mlflow", "from_published"]


# ---------------------------------------------------------------- published study tables

# The study's short column names; lm-eval keys ("acc_norm,none") go through split_lm_eval_key.
_PUBLISHED_ALIASES = {"accuracy": "acc"}


def _published_values(task: str, cells: Mapping[str, object]) -> dict[str, float]:
    values = {}
    for column, raw in cells.items():
        metric, filter_name = split_lm_eval_key(column)
        metric = _PUBLISHED_ALIASES.get(metric, metric)
        value = number(raw)
        # The study wrote 0.0 for perplexities it did not measure (lambada's word_perplexity);
        # a real perplexity is >= 1, so a non-positive one is a blank, not a measurement.
        if "perplexity" in metric and value <= 0:
            value = math.nan
        if not math.isnan(value):
            values.setdefault(metric_key(task, metric, filter_name), value)
    return values


def _published_csv(path: Path) -> dict[str, dict[str, dict]]:
    """model name -> task -> {column: value} from one of the study's CSVs."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    skip = {"model", "pruning_pct", "is_star", "task"}
    out: dict[str, dict[str, dict]] = {}
    for rec in table.to_dict("records"):
        out.setdefault(rec["model"], {})[rec["task"]] = {k: v for k, v in rec.items() if k not in skip}
    return out


def from_published(folder: str | Path) -> pd.DataFrame:
    """The study's ``*_complete_results_latest.json`` (run metadata: expansion ratio, pruning %)
    with the values of the sibling ``*_results_latest.csv`` when present, else the JSON's own."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GluRayError(f"published results folder not found: {folder}")
    files = sorted(folder.glob("*_complete_results*.json"))
    if not files:
        raise GluRayError(f"no *_complete_results*.json in {folder}")
    meta = published_meta()
    rows = []
    for path in files:
        doc = json.loads(path.read_text())
        family = doc["experiment_metadata"]["model_family"]
        method = doc["experiment_metadata"]["pruning_method"].split()[0].lower()  # "MAW (...)" -> maw
        csv = path.with_name(path.name.replace("_complete_results", "_results").replace(".json", ".csv"))
        tables = _published_csv(csv) if csv.is_file() else {}
        for run in doc["models_evaluated"].values():
            info = _published_info(family, method, run)
            for task, cells in tables.get(run["name"], run["results"]).items():
                rows += tidy_rows(info, _published_values(task, cells), {task: meta[task]} if task in meta else {})
    return tidy_frame(rows)


def _published_info(family: str, method: str, run: Mapping) -> RunInfo:
    pct = float(run["pruning_pct"])
    size = re.search(r"(\d+(?:\.\d+)?[BMK])\b", family)  # the study's own label: Llama-3.2-1B -> 1B
    return RunInfo(
        model=family,
        size=size.group(1) if size else family,
        variant="instruct" if "instruct" in family.lower() else "base",
        method=BASELINE if pct == 0 else method,
        expansion_ratio=float(run["expansion_rate"]),
        pruning_pct=pct,
        width=math.nan,
    )


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
                      prune, bool(doc.get("chat_template")))


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
        rows += tidy_rows(_lm_eval_info(run, *families[_fingerprint(run)]), values, meta)
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
