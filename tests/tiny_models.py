"""Pretrained-style submissions built from configs (there is no hub here): a byte-level BPE
tokenizer trained on task text and a tiny GPT-2 saved beside it."""

from __future__ import annotations

from pathlib import Path

from benchmark.models import bpe_tokenizer


def bpe_gpt2_folder(folder: Path, texts: list[str], vocab_size: int = 400, n_positions: int = 512):
    """Save an untrained 2-layer GPT-2 with a BPE tokenizer trained on ``texts`` to
    ``folder``, as a user saves a model; returns the tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = bpe_tokenizer(texts, vocab_size)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return tok
