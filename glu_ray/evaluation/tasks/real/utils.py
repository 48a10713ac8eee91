"""Data sources for the real tasks: the official lm-eval tasks, fed the slices in ../shared/assets/benchmarks.

Each task YAML here is a one-member lm-eval group whose member is the *official* task, referenced by
name, with only ``custom_dataset``/``dataset_kwargs`` (and the names of splits the slice does not
have) overridden: prompt, choices, few-shot format, filters, metrics and scoring stay lm-eval's own.
lm-eval calls these through ``!function utils.<name>``.
"""

from __future__ import annotations

import os

import datasets

from glu_ray.evaluation.benchmarks import dataset_dict, read_jsonl, use_shared_nltk_data

# lm-eval imports this module (the group YAML's !function) before it builds the official ifeval task,
# whose module looks for punkt_tab at import: NLTK must know the shared folder by then.
use_shared_nltk_data()


def load_benchmark(files: dict[str, str], subject: str | None = None, **_metadata) -> datasets.DatasetDict:
    """{split: file in the benchmarks folder} -> DatasetDict; ``subject`` keeps one MMLU subject's rows."""
    splits = {}
    for split, name in files.items():
        rows = read_jsonl(name)
        splits[split] = [r for r in rows if r.get("subject") == subject] if subject else rows
    return dataset_dict(splits)


def winogrande_fields(row: dict) -> dict:
    """The partial-scoring form (context_options, continuation, gold) back in the hub's fields.

    lm-eval's winogrande builds each choice as ``sentence[:blank] + option`` and the target as the
    text after the blank; with the blank placed after the options' common prefix, its choices are
    exactly ``context_options`` and its target exactly ``continuation``.
    """
    first, second = row["context_options"]
    cut = len(os.path.commonprefix([first, second]))
    return {"sentence": f"{first[:cut]}_ {row['continuation']}", "option1": first[cut:], "option2": second[cut:],
            "answer": str(int(row["gold"]) + 1)}


def load_winogrande(files: dict[str, str], **_metadata) -> datasets.DatasetDict:
    return dataset_dict({split: [winogrande_fields(r) for r in read_jsonl(name)] for split, name in files.items()})


