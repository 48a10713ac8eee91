"""Static vs data-driven neuron importance on real weights: WikiText-2 perplexity after pruning.

    python bench/data_metrics_ppl.py                                   # SmolLM2-135M-Instruct (glu-ray fetch smollm2)
    python bench/data_metrics_ppl.py --model ../shared/assets/models/stories260K --eval-pages 40

Every metric ranks the unpruned model once (the data-driven ones from one calibration pass, shared
by all); each (metric, pruning %) is then pruned twice from a fresh copy, without and with FLAP's
bias compensation, and scored with glu-ray's fast WikiText-2 word perplexity (lm-eval semantics).

Evaluation text: the first ``--eval-chars`` characters (whole lines) of each of the first
``--eval-pages`` articles of ../shared/assets/text/wikitext2_raw_test.txt. Calibration text:
``--calib-seqs`` x ``--calib-len`` tokens from the same file's *later* articles (``skip_docs =
eval pages``), so the two never share a token. Prints one Markdown table.

The defaults are sized for a 2-core machine shared by several jobs (~12 min for SmolLM2-135M:
33 evaluations of ~700 tokens); on a free machine raise ``--eval-pages``/``--eval-chars 0`` and
``--calib-seqs``/``--calib-len`` (FLAP calibrates on 1024 x 128 tokens).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import torch
from lm_eval.tasks.wikitext import preprocess_wikitext  # noqa: F401  (imported before any timing)

from glu_ray.evaluation.perplexity import fast_perplexity, load_documents
from glu_ray.models.loading import load_model
from glu_ray.pruning.calibration import CalibrationSpec, calibrate
from glu_ray.pruning.prune import prune, rank
from glu_ray.pruning.widths import TargetWidth, resolve_width

SHARED = Path(os.environ.get("GLU_RAY_SHARED", Path(__file__).resolve().parents[2] / "shared"))
WIKITEXT = SHARED / "assets" / "text" / "wikitext2_raw_test.txt"
STATIC, DATA = ("maw", "vow", "pon", "random"), ("act", "wanda_sp", "flap", "hybrid")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2", help="model folder, hub id or fetched alias (default smollm2)")
    p.add_argument("--text", default=str(WIKITEXT), help="WikiText-2 raw test file")
    p.add_argument("--eval-pages", type=int, default=1, help="first articles scored")
    p.add_argument("--eval-chars", type=int, default=3000,
                   help="keep each evaluation page's first N characters, cut at a line end (0: whole pages)")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--pcts", default="10,30")
    p.add_argument("--metrics", default=",".join(STATIC + DATA))
    p.add_argument("--calib-seqs", type=int, default=16)
    p.add_argument("--calib-len", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the rows here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    docs = [_head(d, args.eval_chars) for d in load_documents(args.text)[: args.eval_pages]]
    spec = CalibrationSpec(args.text, args.calib_seqs, args.calib_len, args.seed, skip_docs=args.eval_pages)
    model, tok = load_model(args.model, device="cpu", dtype=torch.float32)
    cfg = model.config

    def ppl(m) -> float:
        return fast_perplexity(m, tok, docs, max_length=args.max_length, batch_size=1).word_perplexity

    t0 = time.perf_counter()
    base = fast_perplexity(model, tok, docs, max_length=args.max_length, batch_size=1)
    eval_s = time.perf_counter() - t0
    stats = calibrate(model, tok, spec, batch_size=8)
    print(f"model {args.model}: {cfg.num_hidden_layers} layers, intermediate {cfg.intermediate_size}; "
          f"eval {len(docs)} pages / {base.tokens:,} tokens ({eval_s:.1f}s unpruned); calibration "
          f"{stats.tokens:,} tokens, articles {args.eval_pages}+ ({stats.seconds:.1f}s, fingerprint {stats.fingerprint})",
          flush=True)
    pcts = [float(x) for x in args.pcts.split(",")]
    rows = []
    for name in args.metrics.split(","):
        ranking = rank(model, name, seed=args.seed, calibration=stats)
        for bc in (False, True):
            row = {"metric": name, "bias_compensation": bc}
            for pct in pcts:
                pruned = copy.deepcopy(model)
                prune(pruned, ranking, resolve_width(TargetWidth(pruning_pct=pct), cfg.intermediate_size,
                                                     cfg.hidden_size), bias_compensation=bc)
                row[pct] = ppl(pruned)
                del pruned
            rows.append(row)
            print(f"  {name:9s} bc={int(bc)} " + " ".join(f"{p:g}%: {row[p]:.2f}" for p in pcts), flush=True)
    print(table(rows, pcts, base.word_perplexity))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"unpruned_ppl": base.word_perplexity, "rows": rows}, indent=2, default=str))
    return 0


def _head(page: str, chars: int) -> str:
    """The page's first ``chars`` characters, ending at a line end (whole lines, whole words)."""
    if not chars or len(page) <= chars:
        return page
    end = page.rfind("\n", 0, chars)
    return page[: end + 1] if end > 0 else page[:chars]


def table(rows: list[dict], pcts: list[float], baseline: float) -> str:
    head = "| metric | kind | bias comp. | " + " | ".join(f"ppl @ {p:g}%" for p in pcts) + " |"
    lines = [head, "|---|---|---|" + "---:|" * len(pcts), "| unpruned | | | " + " | ".join([f"{baseline:.2f}"] * len(pcts)) + " |"]
    for r in rows:
        kind = "data" if r["metric"] in DATA else "static"
        lines.append(f"| {r['metric']} | {kind} | {'yes' if r['bias_compensation'] else 'no'} | "
                     + " | ".join(f"{r[p]:.2f}" for p in pcts) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
