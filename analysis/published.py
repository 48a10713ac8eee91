"""The reference study's published tables -> the tidy table, checked on the way in.

The study's notebooks wrote these files over time, and later ones differ: ``expansion_rate``
null, in percent (``360.0`` for 3.6x) or plain wrong, the method called PPM instead of MAW,
models with only some pruning levels or fewer tasks. So the stated ratio is never what places a
run: it is derived from the run's pruning percentage and the model's native sizes (its config: a
local model folder, or the snapshot in glu_ray/models/configs/), with the study's own width
arithmetic (glu_ray.pruning.widths), and the stated value is only cross-checked, in either unit.
Every correction is a note naming file, model, run and field, and the value used.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.benchmarks import BenchMeta, published_meta
from analysis.tidy import BASELINE, RunInfo, number, tidy_frame, tidy_rows
from glu_ray.errors import GluRayError
from glu_ray.models.snapshots import glu_sizes
from glu_ray.pruning.importance import canonical_metric
from glu_ray.pruning.widths import TargetWidth, resolve_width
from glu_ray.vocab import metric_key, split_lm_eval_key

# The study's short column names; lm-eval keys ("acc_norm,none") go through split_lm_eval_key.
_COLUMN_ALIASES = {"accuracy": "acc"}
# A stated ratio above this is a percentage: no GLU model widens its MLP 20-fold.
_PERCENT_ABOVE = 20.0


@dataclass(frozen=True)
class Published:
    frame: pd.DataFrame  # the tidy table (analysis.tidy)
    notes: tuple[str, ...]  # every value corrected, derived or skipped, one line each


@dataclass(frozen=True)
class _Axis:
    """How one model's runs are placed on the expansion-ratio axis."""

    native: float  # the unpruned model's intermediate / hidden
    sizes: tuple[int, int] | None  # (intermediate, hidden) from its config, when found
    source: str  # where ``native`` comes from, for the notes

    def at(self, pct: float) -> tuple[float, float, str]:
        """(ratio, width, how) of the model with ``pct`` % of its MLP neurons removed."""
        if self.sizes is None:
            return self.native * (1 - pct / 100), math.nan, f"pruning_pct {pct:g} of the native {self.native:g}x"
        w = resolve_width(TargetWidth(pruning_pct=pct), *self.sizes)
        return w.expansion_ratio, float(w.width), f"{w.width}/{w.hidden} from pruning_pct {pct:g} and {self.source}"


def read_published(folder: str | Path) -> Published:
    """Every ``*_complete_results*.json`` in ``folder`` (run metadata), with the values of its
    sibling ``*_results*.csv`` when present, else the JSON's own."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GluRayError(f"published results folder not found: {folder}")
    files = sorted(folder.glob("*_complete_results*.json"))
    if not files:
        raise GluRayError(f"no *_complete_results*.json in {folder}")
    meta, rows, notes = published_meta(), [], []
    for path in files:
        rows += _read_file(path, meta, notes)
    return Published(tidy_frame(rows), tuple(notes))


def from_published(folder: str | Path) -> pd.DataFrame:
    return read_published(folder).frame


def _read_file(path: Path, meta: Mapping[str, BenchMeta], notes: list[str]) -> list[dict]:
    doc = _json(path)
    runs = doc.get("models_evaluated")
    if not isinstance(runs, dict) or not any(isinstance(r, dict) for r in runs.values()):
        raise GluRayError(f"{path}: no runs in `models_evaluated`; not one of the study's result files")
    runs = {str(k): r for k, r in runs.items() if isinstance(r, dict)}
    md = doc.get("experiment_metadata") if isinstance(doc.get("experiment_metadata"), dict) else {}
    family = _family(path, md, runs, notes)
    method = _method(path, md, notes)
    axis = _axis(path, family, runs, notes)
    tables = _csv_tables(path, notes)
    rows, seen, unknown = [], {}, set()
    for run_id, run in runs.items():
        where = f"{path.name}: {family} run {run_id!r}"
        run_method = _method_name(run["pruning_method"]) if run.get("pruning_method") else method
        info = _run_info(where, family, run, run_method, axis, notes)
        if info is None:
            continue
        if info.pruning_pct in seen:
            notes.append(f"{where}: pruning_pct {info.pruning_pct:g} again (first in run {seen[info.pruning_pct]!r}); skipped")
            continue
        seen[info.pruning_pct] = run_id
        results = tables.get(str(run.get("name"))) or run.get("results")
        if not isinstance(results, dict) or not results:
            notes.append(f"{where}: no results; skipped")
            continue
        for task, cells in results.items():
            if task not in meta:
                unknown.add(task)
            elif isinstance(cells, dict):
                rows += tidy_rows(info, _values(task, cells), {task: meta[task]}, binomial=True)
    if unknown:
        notes.append(f"{path.name}: {family}: tasks not in the study suite, skipped: {', '.join(sorted(unknown))}")
    return rows


def _json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise GluRayError(f"{path} is not valid JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise GluRayError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _family(path: Path, md: Mapping, runs: Mapping[str, dict], notes: list[str]) -> str:
    family = md.get("model_family")
    if isinstance(family, str) and family:
        return family
    base = next((r for r in runs.values() if number(r.get("pruning_pct")) == 0 and r.get("name")), None)
    family = str(base["name"]) if base else path.name.split("_complete_results")[0]
    notes.append(f"{path.name}: experiment_metadata.model_family missing; using {family!r}")
    return family


def _method_name(stated: object) -> str:
    """``"PPM (Peak-to-Peak Magnitude)"`` -> ``maw``: the registry's name for the metric."""
    words = str(stated).split()
    return canonical_metric(words[0]) if words else "unknown"


def _method(path: Path, md: Mapping, notes: list[str]) -> str:
    stated = md.get("pruning_method")
    method = _method_name(stated or "")
    if method == "unknown":
        notes.append(f"{path.name}: experiment_metadata.pruning_method missing; pruned runs are method 'unknown'")
    elif method != str(stated).split()[0].lower():
        notes.append(f"{path.name}: pruning_method {stated!r} is {method!r} (the same metric)")
    return method


def _axis(path: Path, family: str, runs: Mapping[str, dict], notes: list[str]) -> _Axis:
    """The native ratio from the model's config; without one, the baseline's stated ratio."""
    base = [r for r in runs.values() if number(r.get("pruning_pct")) == 0]
    sources = [str(r["hf_repo"]) for r in base if r.get("hf_repo")] + [family]
    for source in sources:
        sizes = glu_sizes(source)
        if sizes:
            return _Axis(sizes[0] / sizes[1], sizes, f"{source}'s config ({sizes[0]}/{sizes[1]})")
    stated = number(base[0].get("expansion_rate")) if base else math.nan
    if math.isfinite(stated) and stated > 0:
        native = stated / 100 if stated > _PERCENT_ABOVE else stated
        notes.append(f"{path.name}: {family}: no config found ({', '.join(sources)}): native ratio {native:g}x is the "
                     "baseline's stated expansion_rate, unchecked; add the model's config.json to glu_ray/models/configs/")
        return _Axis(native, None, "the baseline's stated expansion_rate")
    raise GluRayError(f"{path}: cannot place {family} on the expansion-ratio axis: no config for "
                      f"{' or '.join(sources)} (a local model folder as hf_repo, or glu_ray/models/configs/) "
                      "and no expansion_rate on its baseline run")


def _run_info(where: str, family: str, run: Mapping, method: str, axis: _Axis, notes: list[str]) -> RunInfo | None:
    pct, stated = number(run.get("pruning_pct")), number(run.get("expansion_rate"))
    if not 0 <= pct < 100:
        if not math.isfinite(stated):
            notes.append(f"{where}: pruning_pct is {run.get('pruning_pct')!r} and no expansion_rate; skipped")
            return None
        ratio = stated / 100 if stated > _PERCENT_ABOVE else stated
        pct = round(100 * (1 - ratio / axis.native), 6)
        notes.append(f"{where}: pruning_pct is {run.get('pruning_pct')!r}; using {pct:g} from expansion_rate {stated:g}")
    ratio, width, how = axis.at(pct)
    _check_stated(where, stated, ratio, how, notes)
    size = re.search(r"(\d+(?:\.\d+)?[BMK])\b", family)  # the study's own label: Llama-3.2-1B -> 1B
    return RunInfo(
        model=family, size=size.group(1) if size else family,
        variant="instruct" if "instruct" in family.lower() else "base",
        method=BASELINE if pct == 0 else method, expansion_ratio=ratio, pruning_pct=pct, width=width,
    )


def _close(stated: float, derived: float) -> bool:
    return abs(stated - derived) <= max(0.01, 0.005 * derived)  # the study prints 2 decimals


def _check_stated(where: str, stated: float, ratio: float, how: str, notes: list[str]) -> None:
    if math.isnan(stated):
        notes.append(f"{where}: expansion_rate missing; using {ratio:.4g} ({how})")
    elif _close(stated, ratio):
        return
    elif _close(stated / 100, ratio):
        notes.append(f"{where}: expansion_rate {stated:g} is a percentage; using {ratio:.4g} ({how})")
    else:
        notes.append(f"{where}: expansion_rate {stated:g} is wrong (neither {ratio:.3g}x nor {100 * ratio:.3g}%); "
                     f"using {ratio:.4g} ({how})")


def _values(task: str, cells: Mapping[str, object]) -> dict[str, float]:
    values = {}
    for column, raw in cells.items():
        metric, filter_name = split_lm_eval_key(str(column))
        metric = _COLUMN_ALIASES.get(metric, metric)
        value = number(raw)
        # The study wrote 0.0 for perplexities it did not measure (lambada's word_perplexity);
        # a real perplexity is >= 1, so a non-positive one is a blank, not a measurement.
        if "perplexity" in metric and value <= 0:
            value = math.nan
        if not math.isnan(value):
            values.setdefault(metric_key(task, metric, filter_name), value)
    return values


def _csv_tables(json_path: Path, notes: list[str]) -> dict[str, dict[str, dict]]:
    """model name -> task -> {column: value} from the JSON's sibling CSV, {} when there is none."""
    path = json_path.with_name(json_path.name.replace("_complete_results", "_results").replace(".json", ".csv"))
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        notes.append(f"{path.name}: unreadable CSV ({str(err).splitlines()[0]}); using {json_path.name}'s own results")
        return {}
    if not {"model", "task"} <= set(table.columns):
        notes.append(f"{path.name}: no `model` / `task` columns; using {json_path.name}'s own results")
        return {}
    skip = {"model", "pruning_pct", "is_star", "task"}
    out: dict[str, dict[str, dict]] = {}
    for rec in table.to_dict("records"):
        out.setdefault(rec["model"], {})[rec["task"]] = {k: v for k, v in rec.items() if k not in skip}
    return out
