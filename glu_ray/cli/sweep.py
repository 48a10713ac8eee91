"""The command line shared by the scripts in sweeps/: flags -> SweepGrid + SweepOptions -> run.

A sweep script declares its grid as a ``Preset`` and calls ``main(presets, argv)``; everything a
researcher may override (models, metrics, ratios, suite, stop rule, cluster, storage, tracking)
is a flag here, validated before Ray starts. ``--replay`` applies the stop rule to the finished
trials of the experiment's ledger instead of running anything.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from glu_ray.cli.calibration_flags import add_calibration_args, spec_from_args
from glu_ray.efficiency.spec import EfficiencySpec
from glu_ray.sweep.budget import Budget
from glu_ray.trials.config import EvalSpec
from glu_ray.errors import GluRayError, first_line
from glu_ray.sweep.grid import ModelSpec, SweepGrid
from glu_ray.trials.stop_rule import REFERENCES, StopRule
from glu_ray.pruning.calibration import CalibrationSpec
from glu_ray.cli.main import guarded
from glu_ray.sweep.estimate import print_estimate
from glu_ray.sweep.driver import SweepOptions, SweepResult, run_sweep
from glu_ray.sweep.results import format_table, results_table, trial_status_counts
from glu_ray.models.tiny import tiny_preset_models
from glu_ray.pruning.widths import TargetWidth
from glu_ray.recovery.spec import RecoverySpec
from glu_ray.recovery.students import STUDENTS
from glu_ray.sweep.items import ItemsByPower
from glu_ray.sweep.width_search import DEFAULT_TARGETS, WidthSearch
from glu_ray.vocab import ERROR_TAG, TrialStatus

log = logging.getLogger("glu_ray")


@dataclass(frozen=True)
class Preset:
    """A declared grid. ``models`` may be a function of the storage folder (models built in code)."""

    models: tuple[ModelSpec, ...] | Callable[[Path], tuple[ModelSpec, ...]]
    metrics: tuple[str, ...]
    pruning_pcts: tuple[float, ...] = ()
    ratios: tuple[float, ...] = ()
    eval: EvalSpec | Callable[[Path], EvalSpec] = EvalSpec()
    stop: StopRule = StopRule()
    dtype: str | None = None  # torch dtype of the trials' model (None: auto, see glu_ray/models/precision.py)
    experiment: str = "glu-ray"
    # What data-driven metrics read unless --calibration is given (a function: text written in code).
    calibration: CalibrationSpec | Callable[[Path], CalibrationSpec] | None = None
    efficiency: EfficiencySpec = EfficiencySpec()  # what --measure-efficiency measures
    # Healing settings when a run asks for --recover (text, learning rate, batch): the flags
    # override them; None = RecoverySpec's defaults on WikiText-2's train split.
    recovery: RecoverySpec | Callable[[Path], RecoverySpec] | None = None
    control_seeds: int = 1  # random pruning's replicates at every width (--control-seeds)
    budget: Budget | None = None  # the time it promises (e.g. `make demo`'s ~10 minutes on 2 CPUs)
    widths: WidthSearch | None = None  # --widths auto by default: search these stage-0 ratios (see width_search.py)
    power: ItemsByPower | None = None  # --items-by-power by default (an explicit --limit turns it off)
    # --stage0-only by default: these metrics' pruned trials run stage 0 alone (those of them in the grid's metrics)
    stage0_only: tuple[str, ...] = ()


def tiny_models(storage: Path) -> tuple[ModelSpec, ...]:
    """The tiny presets' models (glu_ray.models.tiny), trained in code on first use, on the tiny suite."""
    return tuple(ModelSpec(str(path), "tiny") for path in tiny_preset_models(storage))


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def build_parser(presets: dict[str, Preset], description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(presets), default=next(iter(presets)), help="declared grid to start from")
    p.add_argument("--models", type=_names, help="comma-separated model folders, hub ids or fetched aliases (smollm2) (replaces the preset's)")
    p.add_argument("--metrics", type=_names, help="comma-separated importance metrics, e.g. maw,vow,pon")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--ratios", type=_floats, help="expansion ratios, e.g. 3.6,2.4")
    how.add_argument("--pruning-pcts", type=_floats, help="percentages of MLP neurons removed, e.g. 10,40")
    how.add_argument("--widths", choices=("auto", "fixed"), help="auto: per model and metric, search (stage 0 only) "
                     "the widths whose perplexity is --width-targets x the baseline's, and evaluate only those; "
                     "fixed: the preset's --ratios/--pruning-pcts (default: the preset's choice)")
    p.add_argument("--width-targets", type=_floats, help="with --widths auto: stage-0 perplexity ratios to the "
                   f"baseline to place widths at (default: {','.join(f'{t:g}' for t in DEFAULT_TARGETS)})")
    p.add_argument("--suite", help="benchmark suite for --models (default: the preset's)")
    p.add_argument("--tasks", type=_names, help="only these benchmarks of the suite")
    p.add_argument("--tasks-dir", help="your own lm-eval task folder")
    p.add_argument("--limit", type=int, help="items per task (quick runs)")
    p.add_argument("--items-by-power", type=float, metavar="DROP", help="size each task's items from a pilot of "
                   "the baseline: enough to see a drop of DROP (e.g. 0.05) at 2 stderrs, within --power-budget; "
                   "prints the sizes and the tasks left out (baseline not above chance)")
    p.add_argument("--power-budget", type=float, metavar="CPU_S", help="with --items-by-power: CPU-seconds one "
                   "trial's evaluation may cost (default: the preset's, else unbounded)")
    p.add_argument("--pilot-items", type=int, help="with --items-by-power: items per task in the baseline's pilot")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--ppl-text", help="stage-0 perplexity text file (default: the preset's / WikiText-2)")
    p.add_argument("--threshold", type=float, help="stop a trial whose stage-0 perplexity exceeds this x the "
                   "reference (default: the preset's; see README 'Early stopping')")
    p.add_argument("--stop-reference", choices=REFERENCES, help="what --threshold multiplies: the unpruned baseline's "
                   "perplexity, or the random-pruning control's at the same width")
    p.add_argument("--no-early-stop", action="store_true", help="evaluate every trial fully (what the audit needs)")
    p.add_argument("--replay", action="store_true", help="apply the stop rule to the experiment's finished trials: "
                   "print what it would have stopped and the trial-seconds saved; runs nothing")
    p.add_argument("--control-seeds", type=int, help="run random pruning (the control) at every width with this "
                   "many seeds (default: the preset's, else 1); the report averages them")
    p.add_argument("--stage0-only", type=_names, metavar="METRIC,...", help="these metrics' pruned trials run stage 0 "
                   "alone (prune, fast perplexity, early stop) and complete without benchmarks; the baseline and the "
                   "other metrics run in full (default: the preset's; '' for none)")
    p.add_argument("--dtype", help="torch dtype trials load the model in: auto (default: bf16 on CUDA where "
                   "supported; on a CPU the faster of bf16 and fp32, measured once per machine), float32, bfloat16")
    heal = p.add_argument_group("healing after pruning (glu_ray.recovery)")
    heal.add_argument("--recover", choices=tuple(STUDENTS), help="heal every pruned trial, then evaluate it again: "
                      + "; ".join(f"{s.name}: {s.doc}" for s in STUDENTS.values()))
    heal.add_argument("--recover-steps", type=int, help="optimiser steps (default: the preset's, else 20)")
    heal.add_argument("--recover-batch-size", type=int, help="sequences per step")
    heal.add_argument("--recover-seq-len", type=int, help="tokens per sequence")
    heal.add_argument("--recover-lr", type=float, help="peak learning rate (default: the method's)")
    heal.add_argument("--recover-text", help="healing text: a local file or 'wikitext' (its train split); "
                      "never the evaluation text")
    heal.add_argument("--recover-skip-docs", type=int, help="skip the text's first documents (when they are evaluated)")
    p.add_argument("--experiment", help="MLflow experiment (and results folder) name")
    p.add_argument("--storage", default="runs", help="results folder (a shared path on a multi-node cluster)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite under --storage)")
    p.add_argument("--address", help="existing Ray cluster address (RAY_ADDRESS works too)")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpu-fraction", type=float, help="GPU share per trial (default: from model size)")
    p.add_argument("--gpu-memory-gb", type=float, help="GPU memory the fraction is sized for, in the sweep and "
                                                      "--estimate alike (default: the driver's GPU, else 80)")
    p.add_argument("--max-failures", type=int, default=0, help="retries of a failing trial")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="2 also shows every trial's output")
    p.add_argument("--measure-efficiency", action="store_true",
                   help="after evaluation, measure each completed trial on its device: params, memory, prefill/decode "
                        "tokens/s at fixed lengths, energy where a counter exists, answer lengths (the report's Pareto view)")
    p.add_argument("--efficiency", metavar="KEY=VALUE,...",
                   help="what --measure-efficiency measures, over the preset's: prompt_len, gen_len, batches (1/8), "
                        "repeats, answer_max_new_tokens, answer_prompts (implies --measure-efficiency)")
    p.add_argument("--estimate", action="store_true", help="print the projected GPU-hours and exit")
    p.add_argument("--gpus", type=int, help="with --estimate: also the wall-clock time on this many GPUs (a "
                   "simulation of the sweep's packing and order) beside the lower bound")
    p.add_argument("--gpus-per-node", type=int, help="with --gpus: GPUs per node (default: all on one node)")
    add_calibration_args(p)
    return p


def grid_from_args(args: argparse.Namespace, preset: Preset) -> SweepGrid:
    storage = Path(args.storage)
    if args.models and args.suite:  # the preset's models are not needed (nor built, for models made in code)
        models = ()
    else:
        models = preset.models(storage) if callable(preset.models) else preset.models
    if args.models:
        suite = args.suite or models[0].suite
        models = tuple(ModelSpec(m, suite) for m in args.models)
    elif args.suite:
        models = tuple(replace(m, suite=args.suite) for m in models)
    targets, widths = _widths(args, preset)
    ev = preset.eval(storage) if callable(preset.eval) else preset.eval
    overrides = {"tasks": args.tasks, "tasks_dir": args.tasks_dir, "limit": args.limit,
                 "batch_size": args.batch_size, "ppl_text": args.ppl_text}
    ev = replace(ev, **{k: v for k, v in overrides.items() if v is not None})
    calibration = spec_from_args(args)
    if calibration is None:
        calibration = preset.calibration(storage) if callable(preset.calibration) else preset.calibration
    return SweepGrid(models, args.metrics or preset.metrics, targets, ev, stop_from_args(args, preset),
                     dtype=args.dtype or preset.dtype, calibration=calibration,
                     control_seeds=args.control_seeds or preset.control_seeds,
                     bias_compensation=args.bias_compensation,
                     efficiency=_efficiency(args, preset),
                     recovery=recovery_from_args(args, preset, storage), widths=widths,
                     power=power_from_args(args, preset),
                     stage0_only=_stage0_only(args, preset, args.metrics or preset.metrics))


def _stage0_only(args: argparse.Namespace, preset: Preset, metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The flag as given (the grid checks each name); a preset's default only for the metrics run,
    so --metrics may leave some of them out."""
    if args.stage0_only is not None:
        return args.stage0_only
    return tuple(m for m in preset.stage0_only if m in metrics)


def _widths(args: argparse.Namespace, preset: Preset) -> tuple[tuple[TargetWidth, ...], WidthSearch | None]:
    """(fixed targets, None), or ((), the search) for --widths auto (a preset's default too)."""
    given = args.pruning_pcts if args.pruning_pcts is not None else args.ratios
    if given is not None and not given:
        raise GluRayError("the grid has no ratios: --ratios / --pruning-pcts got no numbers")
    auto = args.widths == "auto" or (args.widths is None and given is None and preset.widths is not None)
    if auto:
        search = preset.widths or WidthSearch()
        return (), replace(search, targets=args.width_targets) if args.width_targets is not None else search
    if args.width_targets is not None:
        raise GluRayError("--width-targets places widths for --widths auto: add it (or drop --width-targets)")
    pcts, ratios = (args.pruning_pcts, args.ratios) if given else (preset.pruning_pcts, preset.ratios)
    targets = tuple(TargetWidth(pruning_pct=p) for p in pcts or ()) + tuple(TargetWidth(expansion_ratio=r) for r in ratios or ())
    if not targets:
        raise GluRayError("the grid has no ratios: give --ratios, --pruning-pcts or --widths auto")
    return targets, None


def power_from_args(args: argparse.Namespace, preset: Preset) -> ItemsByPower | None:
    """--items-by-power (or the preset's default, unless --limit sets the items by hand)."""
    if args.items_by_power is None:
        if args.power_budget is not None or args.pilot_items is not None:
            raise GluRayError("--power-budget and --pilot-items size --items-by-power: add it")
        return preset.power if args.limit is None else None
    base = preset.power or ItemsByPower(args.items_by_power)
    given = {"budget_s": args.power_budget, "pilot_items": args.pilot_items}
    return replace(base, drop=args.items_by_power, **{k: v for k, v in given.items() if v is not None})


def _efficiency(args: argparse.Namespace, preset: Preset) -> EfficiencySpec | None:
    if not (args.measure_efficiency or args.efficiency):
        return None
    return preset.efficiency.with_overrides(args.efficiency) if args.efficiency else preset.efficiency


def stop_from_args(args: argparse.Namespace, preset: Preset) -> StopRule:
    if args.no_early_stop:
        return StopRule.off()
    given = {k: v for k, v in (("threshold", args.threshold), ("reference", args.stop_reference)) if v is not None}
    return replace(preset.stop, enabled=True, **given) if given else preset.stop


_RECOVER_FLAGS = {"steps": "recover_steps", "batch_size": "recover_batch_size", "lr": "recover_lr"}
_TEXT_FLAGS = {"source": "recover_text", "seq_len": "recover_seq_len", "skip_docs": "recover_skip_docs"}


def recovery_from_args(args: argparse.Namespace, preset: Preset, storage: Path) -> RecoverySpec | None:
    """The healing every pruned trial gets: the preset's settings, then the flags."""
    given = [f"--{dest.replace('_', '-')}" for dest in (*_RECOVER_FLAGS.values(), *_TEXT_FLAGS.values())
             if getattr(args, dest) is not None]
    if args.recover is None:
        if given:
            raise GluRayError(f"{', '.join(given)} need --recover kd|lora")
        return None
    base = preset.recovery(storage) if callable(preset.recovery) else preset.recovery or RecoverySpec()
    data = replace(base.data, **{k: getattr(args, d) for k, d in _TEXT_FLAGS.items() if getattr(args, d) is not None})
    flags = {k: getattr(args, d) for k, d in _RECOVER_FLAGS.items() if getattr(args, d) is not None}
    return replace(base, method=args.recover, data=data, **flags)


def check_args(args: argparse.Namespace) -> None:
    """Numbers and files the grid does not check, before anything is built or started."""
    positive = {"--limit": args.limit, "--batch-size": args.batch_size, "--max-concurrent": args.max_concurrent,
                "--control-seeds": args.control_seeds}
    for flag, value in positive.items():
        if value is not None and value < 1:
            raise GluRayError(f"{flag} must be at least 1 (got {value})")
    if not args.cpus_per_trial > 0:
        raise GluRayError(f"--cpus-per-trial must be > 0 (got {args.cpus_per_trial})")
    if args.gpu_memory_gb is not None and not args.gpu_memory_gb > 0:
        raise GluRayError(f"--gpu-memory-gb must be > 0 (got {args.gpu_memory_gb})")
    if args.gpu_fraction is not None and not 0 < args.gpu_fraction <= 1:
        raise GluRayError(f"--gpu-fraction must be in (0, 1] (got {args.gpu_fraction})")
    if (args.gpus is not None or args.gpus_per_node is not None) and not args.estimate:
        raise GluRayError("--gpus and --gpus-per-node size --estimate's simulation: add --estimate")
    for flag, value in (("--gpus", args.gpus), ("--gpus-per-node", args.gpus_per_node)):
        if value is not None and value < 1:
            raise GluRayError(f"{flag} must be at least 1 (got {value})")
    if args.gpus_per_node and args.gpus and args.gpus % args.gpus_per_node:
        raise GluRayError(f"--gpus {args.gpus} is not a whole number of nodes of --gpus-per-node {args.gpus_per_node}")
    if args.max_failures < -1:
        raise GluRayError(f"--max-failures must be >= 0, or -1 for unlimited retries (got {args.max_failures})")
    if args.ppl_text not in (None, "wikitext") and not Path(args.ppl_text).expanduser().is_file():
        raise GluRayError(f"--ppl-text {args.ppl_text!r} is neither 'wikitext' nor a readable file")
    if args.tasks_dir is not None and not Path(args.tasks_dir).expanduser().is_dir():
        raise GluRayError(f"--tasks-dir {args.tasks_dir!r} is not a folder")


def options_from_args(args: argparse.Namespace, preset: Preset) -> SweepOptions:
    return SweepOptions(
        name=args.experiment or preset.experiment, storage=args.storage, tracking_uri=args.tracking_uri,
        address=args.address, max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
        gpu_fraction=args.gpu_fraction, gpu_memory_gb=args.gpu_memory_gb, max_failures=args.max_failures, verbose=args.verbose,
        budget=preset.budget,
    )


def main(presets: dict[str, Preset], argv: list[str] | None = None, description: str = "") -> int:
    args = build_parser(presets, description).parse_args(argv)
    preset = presets[args.preset]

    def run() -> int:
        check_args(args)
        grid = grid_from_args(args, preset)
        opts = options_from_args(args, preset)
        if args.estimate:
            return print_estimate(grid, opts, gpus=args.gpus, gpus_per_node=args.gpus_per_node)
        return _replay(grid, opts) if args.replay else _run(grid, opts)

    return guarded(run, interrupted="interrupted: rerun the same command to resume (finished trials are kept)")


def _replay(grid: SweepGrid, opts: SweepOptions) -> int:
    from glu_ray.sweep.replay import replay, replay_text

    ledger = Path(opts.storage) / opts.name / "ledger.jsonl"
    if not ledger.is_file():
        raise GluRayError(f"nothing to replay: no ledger at {ledger} (run the sweep first, same --storage/--experiment)")
    print(replay_text(grid.stop, replay(grid.stop, ledger)))
    return 0


def _run(grid: SweepGrid, opts: SweepOptions) -> int:
    result = run_sweep(grid, opts)
    write_sweep_report(result)
    table = results_table(result.trials, result.rows)
    print("\n" + format_table(table))
    print(f"\n{len(table)} trials: {trial_status_counts(table)}")
    failed = int((table["status"] == TrialStatus.FAILED).sum())
    # Not ended: cut short (Ctrl-C), or held back by a failed reference, which is no interruption.
    unended = int(table["status"].isin([TrialStatus.RUNNING.value, TrialStatus.PENDING.value]).sum())
    interrupted = not result.finished and (not result.held or unended > result.held)
    if interrupted:
        print("sweep interrupted: rerun the same command to resume (finished trials are kept)")
    elif failed or result.held:
        held = f" and {result.held} not started (their reference failed)" if result.held else ""
        print(f"{failed} trial(s) failed{held} (errors in MLflow's {ERROR_TAG} tag and {result.experiment_dir}/"
              "ledger.jsonl); rerun the same command to retry only those")
    print(f"results: {result.experiment_dir}\nbrowse:  glu-ray ui --tracking-uri {result.tracking_uri}")
    # Non-zero unless every trial completed or was stopped, so scripts and CI notice failures.
    return 0 if result.finished and not failed else 1


def write_sweep_report(result: SweepResult) -> Path | None:
    """The analysis report of the sweep's own trials and ledger rows (typed, no MLflow round trip),
    written after the sweep returns and logged to its parent run; None when there is nothing to
    compare yet (e.g. only baselines). Never raises: every result is in the ledger and
    `glu-ray report` can retry. Here, in the CLI: analysis sits above glu_ray.sweep."""
    # analysis loads matplotlib, measured +1.5 s per process (python -X importtime): paid only here.
    from analysis import from_sweep, sweep_run_id, write_report

    out = result.experiment_dir / "report"
    try:
        frame = from_sweep(result.trials, result.rows, result.plans)
        try:
            run_id = sweep_run_id(result.experiment, result.tracking_uri)
        except Exception as err:  # noqa: BLE001 - MLflow gone: the report is still written, locally
            log.warning("the sweep's report is not logged to MLflow (%s)", first_line(err))
            run_id = None
        return write_report(frame, out, mlflow_run_id=run_id, tracking_uri=result.tracking_uri).parent
    except GluRayError as err:
        log.info("no analysis report yet: %s", err)
    except Exception as err:  # noqa: BLE001 - every result is in the ledger; `glu-ray report` can retry
        log.warning("could not write the sweep's analysis report: %s", err)
    return None
