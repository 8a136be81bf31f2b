"""Tiny Hugging Face experts and text for the tool tests: nothing is downloaded.

Three GPT-2-style models (one layer, random weights from a config, seeded) sharing a
small byte-level BPE tokenizer trained with ``tokenizers`` on the test text, saved with
``save_pretrained``; and three domains of a few kilobytes of generated text.
"""

from __future__ import annotations

import random
from pathlib import Path

WORDS = {
    "scripture": "and the lord said unto them behold thy servant shall go forth in that day for ever amen".split(),
    "code": "int main ( void ) { return 0 ; } if else while for char * ptr = NULL ; struct".split(),
    "news": "the minister said on monday that prices rose by three percent in the city markets report".split(),
}


def domain_docs(name: str, n_docs: int = 24, words: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(f"{seed}:{name}")
    vocab = WORDS[name]
    return [" ".join(rng.choice(vocab) for _ in range(words)) + "\n" for _ in range(n_docs)]


def write_domains(root: Path, **kw) -> dict[str, Path]:
    """One directory per domain with one .txt file per document (the code domain as JSONL)."""
    import json

    paths = {}
    for name in WORDS:
        docs = domain_docs(name, **kw)
        if name == "code":
            path = root / f"{name}.jsonl"
            path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
            paths[name] = path
        else:
            d = root / name
            d.mkdir(parents=True, exist_ok=True)
            for i, doc in enumerate(docs):
                (d / f"{i:03d}.txt").write_text(doc)
            paths[name] = d / "*.txt"
    return paths


def build_tokenizer(texts, vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def build_models(root: Path, n: int = 3, *, n_positions: int = 64, seed: int = 0) -> list[Path]:
    """Save n tiny GPT-2 models (random weights, seeds seed..seed+n-1) with one tokenizer under root."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    texts = [d for name in WORDS for d in domain_docs(name)]
    tokenizer = build_tokenizer(texts)
    dirs = []
    for i in range(n):
        torch.manual_seed(seed + i)
        cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=32, n_layer=1, n_head=2,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        model = GPT2LMHeadModel(cfg)
        path = root / f"expert{i}"
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        dirs.append(path)
    return dirs
