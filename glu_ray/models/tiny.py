"""Tiny GLU models built and trained in code, for the offline `--preset tiny` sweep and tests.

A random-init model is useless for studying pruning: every width is equally bad. These models
are trained for a few hundred steps on a small generated corpus, so their MLP neurons carry
real structure and aggressive pruning really hurts. Nothing is downloaded.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from glu_ray.files import clear_leftovers, file_lock, publish, temp_sibling

_SUBJECTS = ["the cat", "a dog", "the little girl", "my friend", "the old man", "a bird", "the teacher", "our team"]
_VERBS = ["sat on", "looked at", "ran to", "found", "liked", "painted", "carried", "lost"]
_OBJECTS = ["the mat", "a red ball", "the big tree", "a shiny key", "the river", "a small box", "the garden", "her hat"]
_ENDINGS = ["and smiled.", "in the morning.", "after lunch.", "because it was fun.", "with great care.", "again."]


def tiny_corpus(sentences: int, seed: int = 0) -> str:
    """Templated English-like text: learnable in seconds, with grammar an MLP must encode."""
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        s, v, o, e = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_ENDINGS)
        n = rng.randint(2, 9)
        lines.append(f"{s.capitalize()} {v} {o} {e} Then {s} counted {n}, {n + 1}, {n + 2}.")
    return "\n".join(lines) + "\n"


def byte_tokenizer():
    """A real fast tokenizer, one token per byte (byte-level BPE with no merges), built offline."""
    from transformers import (
        PreTrainedTokenizerFast,  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)
    )

    vocab = {tok: i for i, tok in enumerate(["<unk>", "<s>", "</s>"])}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.pad_token = fast.eos_token
    return fast


def tiny_llama(tokenizer, *, hidden: int = 64, intermediate: int = 256, layers: int = 2, seed: int = 0):
    from transformers import (  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(cfg)


def train(model, tokenizer, text: str, *, steps: int, seq_len: int = 96, batch: int = 16, lr: float = 3e-3, seed: int = 0):
    """Plain next-token training on random windows of ``text``; returns the final loss."""
    ids = torch.tensor(tokenizer(text)["input_ids"])  # [N]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq_len - 1, (batch,), generator=gen)
        x = torch.stack([ids[s : s + seq_len] for s in starts])  # [B, T]
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return loss.item()


def build_tiny_model(out_dir: str | Path, *, seed: int = 0, steps: int = 250, **sizes) -> Path:
    """Train and save a tiny Llama + tokenizer; reused if already there. Safe when several
    processes build the same folder at once: one trains, the others wait and reuse it."""
    out = Path(out_dir)
    if (out / "config.json").is_file():
        return out
    with file_lock(out.with_name(f".{out.name}.lock")):
        if (out / "config.json").is_file():  # built by whoever held the lock before us
            return out
        clear_leftovers(out)  # half-written folders of builds that were killed
        torch.manual_seed(seed)
        tok = byte_tokenizer()
        model = tiny_llama(tok, seed=seed, **sizes)
        with torch.random.fork_rng():
            torch.set_num_threads(max(1, torch.get_num_threads()))
            train(model, tok, tiny_corpus(4000, seed), steps=steps, seed=seed)
        tmp = temp_sibling(out)  # a name of our own: never another writer's half-written folder
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        publish(tmp, out)  # atomic: a half-trained model is never picked up
    return out


def tiny_preset_models(storage: Path) -> tuple[Path, ...]:
    """The `--preset tiny` model folders: two small Llamas of different shapes, trained once and cached."""
    root = tiny_models_root(storage)
    shapes = {"tiny-llama-a": dict(hidden=64, intermediate=256, layers=2), "tiny-llama-b": dict(hidden=64, intermediate=192, layers=2)}
    return tuple(build_tiny_model(root / name, seed=i, **s) for i, (name, s) in enumerate(shapes.items()))


def tiny_models_root(storage: Path) -> Path:
    return Path(storage) / "tiny-models"


def tiny_calibration_text(storage: Path) -> Path:
    """Text from the same generator with another seed: the tiny preset's calibration, disjoint
    from both the training corpus and eval.txt."""
    path = tiny_models_root(storage) / "calibration.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tiny_corpus(400, seed=20_000))
    return path


def tiny_calibration(storage: Path):
    """The tiny preset's CalibrationSpec: 16 x 96 byte tokens (the tiny models' training length)."""
    from glu_ray.pruning.calibration import CalibrationSpec

    return CalibrationSpec(str(tiny_calibration_text(storage)), n_sequences=16, seq_len=96)


def tiny_eval_text(storage: Path) -> Path:
    """Held-out text from the same generator: the tiny preset's stage-0 perplexity text."""
    path = tiny_models_root(storage) / "eval.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
        tmp.write_text(tiny_corpus(300, seed=10_000))
        publish(tmp, path)  # a reader never sees half the text
    return path


def tiny_heal_text(storage: Path) -> Path:
    """Text from the same generator for healing (``--recover``): neither the eval text's seed nor a training seed."""
    path = tiny_models_root(storage) / "heal.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tiny_corpus(1000, seed=20_000))
    return path
