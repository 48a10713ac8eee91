"""Helpers for the offline tiny tasks: JSONL loading, lm-eval's WikiText scoring, an IFEval-style checker.

lm-eval calls these through ``!function utils.<name>`` in the task YAMLs next to this file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets

# The tiny perplexity task must score exactly like lm-eval's `wikitext`: reuse its functions.
from lm_eval.tasks.wikitext.preprocess_wikitext import process_results as wikitext_process_results  # noqa: F401
from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer  # noqa: F401

HERE = Path(__file__).resolve().parent


def load_jsonl(files: dict[str, str], **_metadata) -> datasets.DatasetDict:
    """{split: file name next to this module} -> DatasetDict; extra lm-eval metadata is ignored."""
    splits = {}
    for split, name in files.items():
        rows = [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()]
        splits[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(splits)


# --- IFEval-style instruction checks: each returns True when the response follows the instruction.
def _lowercase(response: str, **_) -> bool:
    return response == response.lower()


def _max_words(response: str, n: int, **_) -> bool:
    return len(response.split()) <= n


def _include_word(response: str, word: str, **_) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", response, flags=re.IGNORECASE) is not None


def _exclude_word(response: str, word: str, **_) -> bool:
    return not _include_word(response, word)


def _ends_with(response: str, phrase: str, **_) -> bool:
    return response.strip().endswith(phrase)


def _no_commas(response: str, **_) -> bool:
    return "," not in response


CHECKS = {
    "lowercase": _lowercase,
    "max_words": _max_words,
    "include_word": _include_word,
    "exclude_word": _exclude_word,
    "ends_with": _ends_with,
    "no_commas": _no_commas,
}


def _kwargs(instruction: dict) -> dict:
    # Arrow stores the JSONL's per-instruction kwargs as one struct: absent keys come back as None.
    return {k: v for k, v in (instruction.get("kwargs") or {}).items() if v is not None}


def ifeval_process_results(doc: dict, results: list[str]) -> dict:
    """Strict checks on the raw response, scored like lm-eval's ifeval (prompt- and instruction-level)."""
    response = results[0]
    followed = [bool(CHECKS[i["id"]](response, **_kwargs(i))) for i in doc["instructions"]]
    return {"prompt_level_strict_acc": all(followed), "inst_level_strict_acc": followed}


def agg_inst_level_acc(items: list[list[bool]]) -> float:
    flat = [x for sub in items for x in sub]
    return sum(flat) / len(flat)
