"""Fast perplexity vs lm-eval's loglikelihood_rolling, side by side on the same documents.

    python bench/ppl_speed.py [--model DIR] [--max-length 512] [--batch-size 8] [--repeats 3] [--docs N]

Both sides score the same documents with the same model, max_length and batch size: glu-ray's
fast_perplexity, and lm-eval's own HFLM.loglikelihood_rolling + wikitext process_results +
aggregation (glu_ray.evaluation.perplexity.lm_eval_perplexity). Runs alternate and the median is reported,
because shared CPUs are noisy. Prints values, relative difference and speed-up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from pathlib import Path

for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLU_RAY_SHARED", ROOT.parent / "shared"))
SOURCES = {"tinystories": "tinystories_valid_head.txt", "wikitext2": "wikitext2_raw_test.txt"}
DEFAULT_DOCS = {"tinystories": 500, "wikitext2": 8}  # paragraphs / articles: ~50k and ~95k tokens


def measure(model, tok, docs, args) -> dict:
    from glu_ray.evaluation.perplexity import fast_perplexity, lm_eval_perplexity

    runs = {"lm-eval": [], "glu-ray": []}
    for _ in range(args.repeats):  # alternate so load spikes hit both sides alike
        for name, fn in (("lm-eval", lm_eval_perplexity), ("glu-ray", fast_perplexity)):
            # lm-eval opens a progress bar per batch of windows (on stderr); they would bury the table.
            with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
                runs[name].append(fn(model, tok, docs, max_length=args.max_length, batch_size=args.batch_size))
    return runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(SHARED / "assets/models/stories260K"))
    p.add_argument("--text-dir", default=str(SHARED / "assets/text"))
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--docs", type=int, help="first N documents of each source, 0 = all "
                   f"(default {DEFAULT_DOCS})")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from glu_ray.evaluation.perplexity import load_documents

    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    print(f"model {Path(args.model).name}, max_length {args.max_length}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats} alternating runs")
    header = f"{'source':<12}{'docs':>6}{'tokens':>9}{'lm-eval ppl':>15}{'glu-ray ppl':>15}{'rel diff':>10}" \
             f"{'lm-eval s':>11}{'glu-ray s':>11}{'speed-up':>10}"
    print(header)
    for label, name in SOURCES.items():
        docs = load_documents(str(Path(args.text_dir) / name))
        count = DEFAULT_DOCS[label] if args.docs is None else args.docs
        docs = docs[:count] if count else docs
        runs = measure(model, tok, docs, args)
        ref, ours = runs["lm-eval"][0], runs["glu-ray"][0]
        t_ref = statistics.median(r.seconds for r in runs["lm-eval"])
        t_ours = statistics.median(r.seconds for r in runs["glu-ray"])
        rel = abs(ours.word_perplexity / ref.word_perplexity - 1)
        print(f"{label:<12}{len(docs):>6}{ours.tokens:>9}{ref.word_perplexity:>15.6f}{ours.word_perplexity:>15.6f}"
              f"{rel:>10.1e}{t_ref:>11.2f}{t_ours:>11.2f}{t_ref / t_ours:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
