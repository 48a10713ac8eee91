"""``dtype: auto``: bf16 only where it measures faster; the measurement cached per machine; a flag wins."""

from __future__ import annotations

import json
import math

import pytest
import torch

from glu_ray.errors import GluRayError
from glu_ray.models import precision
from glu_ray.models.precision import AUTO, DtypeChoice, at_least_stored, choose_dtype


def _never(*_):
    raise AssertionError("an explicit dtype must not be measured")


@pytest.mark.parametrize("speedup, expected", [(0.02, "float32"), (1.1, "float32"), (4.6, "bfloat16")])
def test_auto_on_cpu_keeps_the_dtype_that_measures_faster(speedup, expected):
    seen = []
    choice = choose_dtype(AUTO, "cpu", 576, 1536, measure=lambda h, i: seen.append((h, i)) or speedup)
    assert choice == DtypeChoice(expected, f"cpu: bf16 measured {speedup:.2g}x fp32", speedup)
    assert seen == [(576, 1536)]  # timed on the model's own MLP shape
    assert choose_dtype(None, "cpu", 576, 1536, measure=lambda h, i: speedup).dtype == expected  # None is auto


@pytest.mark.parametrize("flag", ["float32", "bfloat16"])
def test_an_explicit_dtype_wins_without_measuring(flag):
    assert choose_dtype(flag, "cpu", 576, 1536, measure=_never) == DtypeChoice(flag, "requested")


def test_an_unknown_dtype_is_one_line_before_anything_loads():
    with pytest.raises(GluRayError, match="unknown dtype 'bf17'") as err:
        choose_dtype("bf17", "cpu", 8, 8, measure=_never)
    assert "\n" not in str(err.value)


def test_measurement_is_cached_per_machine_key(tmp_path, monkeypatch):
    monkeypatch.setenv("GLU_RAY_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(precision, "bf16_speedup", lambda h, i: calls.append((h, i)) or 3.0)
    assert precision.cached_bf16_speedup(64, 172) == 3.0
    assert precision.cached_bf16_speedup(64, 172) == 3.0
    assert calls == [(64, 172)]  # measured once
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)  # another thread count is another machine for this purpose
        precision.cached_bf16_speedup(64, 172)
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 2
    saved = json.loads((tmp_path / "dtype-speed.json").read_text())
    assert sorted(v["bf16_speedup"] for v in saved.values()) == [3.0, 3.0]
    assert all("torch " + torch.__version__ in key for key in saved)


def test_the_real_measurement_is_quick_and_finite():
    import time

    start = time.perf_counter()
    ratio = precision.bf16_speedup(64, 172)
    assert math.isfinite(ratio) and ratio > 0
    assert time.perf_counter() - start < 5


def test_pruning_never_computes_below_the_checkpoints_precision():
    from transformers import LlamaConfig

    fp32, bf16 = LlamaConfig(dtype="float32"), LlamaConfig(dtype="bfloat16")
    measured = DtypeChoice("bfloat16", "cpu: bf16 measured 4.6x fp32", 4.6)
    assert at_least_stored(measured, fp32).dtype == "float32"
    assert at_least_stored(measured, bf16) == measured
    assert at_least_stored(DtypeChoice("bfloat16", "requested"), fp32).dtype == "bfloat16"  # the flag wins


def test_eval_records_the_choice_and_the_flag_overrides_it(tiny_model_dir, tmp_path, monkeypatch):
    from glu_ray.cli.main import main

    monkeypatch.setenv("GLU_RAY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "auto.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", "tiny", "--tasks", "tiny_mc", "--limit", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    auto = json.loads(out.read_text())["dtype"]
    assert auto["reason"].startswith("cpu: bf16 measured") and auto["bf16_speedup"] > 0
    assert auto["dtype"] == ("bfloat16" if auto["bf16_speedup"] >= precision.MIN_BF16_GAIN else "float32")
    assert (tmp_path / "cache" / "dtype-speed.json").is_file()
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", "tiny", "--tasks", "tiny_mc", "--limit", "2",
                 "--device", "cpu", "--dtype", "bfloat16", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["dtype"] == {"dtype": "bfloat16", "reason": "requested", "bf16_speedup": None}


@pytest.mark.slow
def test_every_trial_records_the_dtype_it_chose_in_mlflow_and_the_ledger(finished_tiny_sweep):
    import mlflow

    from glu_ray.trials.ledger import Ledger
    from glu_ray.vocab import BF16_SPEEDUP, DTYPE_USED, ROLE_TRIAL, role_filter

    result, grid, opts = finished_tiny_sweep
    assert grid.dtype is None  # the default: auto
    rows = Ledger(result.experiment_dir / "ledger.jsonl").results()
    mlflow.set_tracking_uri(result.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[opts.name], filter_string=role_filter(ROLE_TRIAL), output_format="list")
    assert len(runs) == len(result.trials)
    for run in runs:
        row = rows[run.data.tags["glu_ray.trial_key"]]
        assert run.data.params["dtype"] == AUTO
        assert run.data.params[DTYPE_USED] == row[DTYPE_USED] in ("float32", "bfloat16")
        speedup = run.data.metrics[BF16_SPEEDUP]
        assert speedup == pytest.approx(row[BF16_SPEEDUP]) and speedup > 0
        assert row[DTYPE_USED] == ("bfloat16" if speedup >= precision.MIN_BF16_GAIN else "float32")
