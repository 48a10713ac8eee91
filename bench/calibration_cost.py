"""Cost of data-driven ranking: glu-ray's calibration pass vs OptiPFair 0.4.2's vs one evaluation.

    python bench/calibration_cost.py                       # SmolLM2-135M-Instruct (glu-ray fetch smollm2)
    python bench/calibration_cost.py --model ../shared/assets/models/stories260K --text ../shared/assets/text/tinystories_valid_head.txt

Same calibration for both libraries: ``--seqs`` x ``--seq-len`` tokens from ``--text`` (articles
after the evaluation pages), in batches of ``--batch``. Timed, each the best of ``--repeats``:
  glu-ray    calibrate (one hooked pass, fp64 running sums) + rank("hybrid") + prune
  OptiPFair  prune_model(MAW, dataloader=the same batches): its hooked pass + hybrid scoring + prune
  stage 0    glu-ray's fast WikiText-2 perplexity of the unpruned model on the first ``--eval-pages``
             articles: the first (and, for a stopped trial, only) evaluation of every trial
Wall and process-CPU seconds: on a shared machine other processes inflate the wall clock.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import torch
from lm_eval.tasks.wikitext import preprocess_wikitext  # noqa: F401  (imported before any timing)

from glu_ray.evaluation.perplexity import fast_perplexity, load_documents
from glu_ray.models.loading import load_model
from glu_ray.pruning.calibration import (
    CalibrationSpec,
    calibration_tokens,
    collect_stats,
    token_batches,
)
from glu_ray.pruning.prune import prune, rank
from glu_ray.pruning.widths import TargetWidth, resolve_width

SHARED = Path(os.environ.get("GLU_RAY_SHARED", Path(__file__).resolve().parents[2] / "shared"))
WIKITEXT = SHARED / "assets" / "text" / "wikitext2_raw_test.txt"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--text", default=str(WIKITEXT))
    p.add_argument("--eval-pages", type=int, default=2)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--seqs", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--pct", type=float, default=30)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    return p.parse_args(argv)


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(best wall s, best CPU s, last result)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), out


def main(argv=None) -> int:
    import optipfair

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("optipfair").setLevel(logging.WARNING)
    model, tok = load_model(args.model, device="cpu", dtype=torch.float32)
    cfg = model.config
    width = resolve_width(TargetWidth(pruning_pct=args.pct), cfg.intermediate_size, cfg.hidden_size)
    spec = CalibrationSpec(args.text, args.seqs, args.seq_len, skip_docs=args.eval_pages)
    batches = token_batches(calibration_tokens(spec, tok), args.batch)
    docs = load_documents(args.text)[: args.eval_pages]

    def ours():
        stats = collect_stats(model, batches, spec.fingerprint)
        pruned = copy.deepcopy(model)
        prune(pruned, rank(pruned, "hybrid", calibration=stats), width)
        return stats

    def theirs():
        pruned = copy.deepcopy(model)
        optipfair.prune_model(pruned, pruning_type="MLP_GLU", neuron_selection_method="MAW",
                              pruning_percentage=args.pct, dataloader=batches, show_progress=False)
        return pruned

    def copy_only():
        return copy.deepcopy(model)

    copy_w, copy_c, _ = timed(copy_only, args.repeats)  # both sides prune a fresh copy: shown apart
    calib_w, calib_c, stats = timed(lambda: collect_stats(model, batches, spec.fingerprint), args.repeats)
    ours_w, ours_c, _ = timed(ours, args.repeats)
    theirs_w, theirs_c, _ = timed(theirs, args.repeats)
    ppl_w, ppl_c, ppl = timed(lambda: fast_perplexity(model, tok, docs, max_length=args.max_length, batch_size=1),
                              args.repeats)
    print(f"model {args.model} ({cfg.num_hidden_layers} layers, I={cfg.intermediate_size}), {args.threads} thread(s); "
          f"calibration {stats.tokens:,} tokens ({args.seqs} x {args.seq_len}, batch {args.batch}); "
          f"stage 0: {len(docs)} pages, {ppl.tokens:,} tokens; best of {args.repeats}\n")
    print("| step | wall s | CPU s |\n|---|---:|---:|")
    for name, w, c in (("glu-ray calibration pass alone", calib_w, calib_c),
                       (f"glu-ray calibrate + rank(hybrid) + prune {args.pct:g}%", ours_w, ours_c),
                       (f"OptiPFair prune_model(MAW, dataloader) {args.pct:g}%", theirs_w, theirs_c),
                       ("(model copy, inside both rows above)", copy_w, copy_c),
                       ("one trial's stage 0 (fast WikiText-2 perplexity, unpruned)", ppl_w, ppl_c)):
        print(f"| {name} | {w:.2f} | {c:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
