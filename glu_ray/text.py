"""Text as the library reads it: documents split from a file, and tokens encoded as lm-eval encodes
them. Below both pruning (calibration text) and evaluation (stage 0's perplexity), which share it:
calibration tokenizes exactly as stage 0 does, without pruning knowing any benchmark code.
"""

from __future__ import annotations

import re

_ARTICLE = re.compile(r"^ = [^=].* = \s*$")  # ` = Title = ` starts an article; ` = = Section = = ` does not


def split_documents(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if any(_ARTICLE.match(line) for line in lines):
        docs: list[list[str]] = []
        for line in lines:
            if _ARTICLE.match(line) or not docs:
                docs.append([])
            docs[-1].append(line)
        return ["".join(d) for d in docs if "".join(d).strip()]
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def encode(tokenizer, text: str) -> list[int]:
    """HFLM.tok_encode: the tokenizer's default special tokens, unless the text already starts with BOS."""
    bos = tokenizer.decode(prefix_token_id(tokenizer))
    add = {"add_special_tokens": False} if bos and text.startswith(bos) else {}
    return tokenizer.encode(text, **add)


def prefix_token_id(tokenizer) -> int:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
