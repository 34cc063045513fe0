"""Pretrained-style submissions built from configs (there is no hub here): a byte-level BPE
tokenizer trained on task text and a tiny GPT-2 saved beside it."""

from __future__ import annotations

from pathlib import Path


def train_bpe(texts: list[str], vocab_size: int = 500):
    """A byte-level BPE `tokenizers.Tokenizer` trained on ``texts`` (specials: an end of
    text and a "<s>" that a test may make the BOS), spaces inside tokens as GPT-2 has them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return core


def bpe_gpt2_folder(folder: Path, texts: list[str], vocab_size: int = 400, n_positions: int = 512):
    """Save an untrained 2-layer GPT-2 with a BPE tokenizer trained on ``texts`` to
    ``folder``, as a user saves a model; returns the tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=train_bpe(texts, vocab_size), eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return tok
