"""The codebase's shape, checked: one vocabulary module, an import graph that reads top-down."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("glu_ray", "analysis", "sweeps", "bench")  # everything but the tests
VOCAB = REPO / "glu_ray" / "vocab.py"

# Spellings that belong to glu_ray/vocab.py alone: trial statuses, result keys, the baseline's
# name, MLflow tag names. (lm-eval's own filter name "none" is lm-eval's vocabulary, not ours.)
_Q = "[\"']"
STRAY = {
    "a trial status": re.compile(r"([\"'])(completed|failed|running|pending|stopped: catastrophic)\1"),
    "a status matched by prefix": re.compile(rf"startswith\({_Q}stopped"),
    "a stage-0 / timing key": re.compile(rf"{_Q}(ppl|trial|eval)/\w|ratio_to_baseline"),
    "the baseline's name": re.compile(r"([\"'])baseline\1|metric\w* or [\"']none[\"']"),
    "an identity key": re.compile(rf"{_Q}trial_key{_Q}"),
    "an MLflow tag name": re.compile(rf"{_Q}glu_ray\.(role|status|trial_key|error|report|trial_config){_Q}"),
}


def _product_files():
    for top in PRODUCT:
        yield from sorted((REPO / top).rglob("*.py"))


def test_no_status_key_or_baseline_spelling_outside_vocab():
    found = []
    for path in _product_files():
        if path == VOCAB:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(REPO)}:{n}: {what}: {line.strip()}"
                      for what, rx in STRAY.items() if rx.search(line)]
    assert not found, "spell these through glu_ray.vocab:\n" + "\n".join(found)


def test_the_grep_would_catch_a_stray_spelling():
    samples = ['status == "completed"', "x.startswith('stopped')", 'row["ppl/word_perplexity"]',
               'cfg.metric or "none"', 'method="baseline"', 'tags["glu_ray.status"]', 'd["trial_key"]']
    assert all(any(rx.search(s) for rx in STRAY.values()) for s in samples)
    assert not any(rx.search('filter: str = "none"') for rx in STRAY.values())
