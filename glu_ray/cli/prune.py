"""glu-ray prune: rank a model's GLU neurons with one metric, prune to a width, save."""

from __future__ import annotations

import argparse
from pathlib import Path

from glu_ray.cli.calibration_flags import add_calibration_args, spec_from_args
from glu_ray.errors import GluRayError
from glu_ray.models.loading import check_glu_config, load_model, resolve_dtype
from glu_ray.models.precision import AUTO, at_least_stored, stored_dtype
from glu_ray.pruning.bias_compensation import check_supported
from glu_ray.pruning.calibration import calibrate, calibration_documents
from glu_ray.pruning.importance import METRICS, get_metric
from glu_ray.pruning.prune import prune, rank, save_pruned
from glu_ray.pruning.widths import TargetWidth, resolve_width


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("prune", help="width-prune a model's GLU MLPs and save it")
    p.add_argument("--model", required=True, help="local model folder, hub id, or a fetched alias (glu-ray fetch)")
    p.add_argument("--metric", required=True, help=f"importance metric: {', '.join(sorted(METRICS))}")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--pruning-pct", type=float, help="percentage of MLP neurons to remove, e.g. 40")
    how.add_argument("--expansion-ratio", type=float, help="target intermediate/hidden ratio, e.g. 2.4")
    how.add_argument("--width", type=int, help="explicit intermediate width")
    p.add_argument("--divisor", type=int, help="round the width to the nearest multiple (32/64/128/256)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random metric")
    p.add_argument("--batch-size", type=int, default=8, help="calibration batch size")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--dtype", default=AUTO, help="dtype the model computes in: auto (the faster of bf16/fp32 on "
                   "this machine, never below the checkpoint's precision), float32, bfloat16; the pruned "
                   "model is saved in the checkpoint's own dtype")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    p.add_argument("--out", required=True, help="folder to write the pruned model + tokenizer")
    add_calibration_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    # Everything checkable is checked before a weight is read.
    m = get_metric(args.metric)
    spec = spec_from_args(args)
    if spec is None and (m.needs_calibration or args.bias_compensation):
        why = f"metric {m.name!r} is data-driven" if m.needs_calibration else "--bias-compensation"
        raise GluRayError(f"{why}: it needs --calibration wikitext or --calibration FILE")
    target = TargetWidth(args.pruning_pct, args.expansion_ratio, args.width, args.divisor)
    config = check_glu_config(args.model, trust_remote_code=args.trust_remote_code)
    width = resolve_width(target, config.intermediate_size, config.hidden_size)
    if width.width < 1:
        raise GluRayError("the requested target leaves no neurons")
    if args.bias_compensation:
        check_supported(config)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise GluRayError(f"--out {args.out} exists and is not a folder")
    if spec is not None:
        calibration_documents(spec)  # an unreachable dataset or an empty file fails before the model loads

    choice = at_least_stored(resolve_dtype(config, args.dtype, device=args.device), config)
    print(f"dtype {choice.dtype} ({choice.reason})")
    model, tok = load_model(args.model, device=args.device, dtype=choice.torch_dtype, config=config,
                            trust_remote_code=args.trust_remote_code)
    stats = calibrate(model, tok, spec, batch_size=args.batch_size) if spec is not None else None
    if stats is not None:
        print(f"calibrated on {stats.tokens:,} tokens ({spec.n_sequences} x {spec.seq_len}, "
              f"fingerprint {stats.fingerprint}) in {stats.seconds:.2f}s")
    ranking = rank(model, args.metric, seed=args.seed, calibration=stats)
    report = prune(model, ranking, width, bias_compensation=args.bias_compensation)
    model.to(stored_dtype(config) or choice.torch_dtype)  # saved as the checkpoint was: slicing loses nothing
    out = save_pruned(model, tok, args.out, report)
    print(f"ranked {len(ranking.order)} layers with {ranking.metric} in {ranking.seconds:.2f}s")
    print(report.summary())
    print(f"saved to {out}")
    return 0
