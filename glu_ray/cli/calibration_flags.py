"""The calibration flags shared by `glu-ray prune` and the sweep scripts: flags -> CalibrationSpec."""

from __future__ import annotations

import argparse

from glu_ray.pruning.calibration import CalibrationSpec


def add_calibration_args(p: argparse.ArgumentParser) -> None:
    d = CalibrationSpec()
    g = p.add_argument_group("calibration (data-driven metrics: act, wanda_sp, flap, hybrid; bias compensation)")
    g.add_argument("--calibration", metavar="SOURCE",
                   help="'wikitext' (WikiText-2 train split) or a local text file")
    g.add_argument("--calibration-sequences", type=int, default=d.n_sequences, help="sequences (default %(default)s)")
    g.add_argument("--calibration-seq-len", type=int, default=d.seq_len, help="tokens per sequence (default %(default)s)")
    g.add_argument("--calibration-seed", type=int, default=d.seed, help="seed that picks the sequences")
    g.add_argument("--calibration-skip-docs", type=int, default=d.skip_docs,
                   help="skip the file's first documents (keep calibration off evaluation text)")
    g.add_argument("--bias-compensation", action="store_true",
                   help="add the pruned neurons' mean contribution to down_proj's bias (FLAP); needs --calibration")


def spec_from_args(args: argparse.Namespace) -> CalibrationSpec | None:
    """The spec, checked (file readable, sizes positive); None without --calibration."""
    if args.calibration is None:
        return None
    return CalibrationSpec(args.calibration, args.calibration_sequences, args.calibration_seq_len,
                           args.calibration_seed, args.calibration_skip_docs)
