"""Submissions of other architectures and tokenizers, built from configs (no hub): each is
evaluated, or refused up front with one line, never a traceback (issue 15's matrix)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.runner import evaluate_folder
from benchmark.submissions import write_submission_toml
from tasks import get_task
from benchmark.models import train_bpe
from tests.test_submissions import TINY_EVAL

CFG = dataclasses.replace(TINY_EVAL, causal_pairs=8)


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE tokenizer trained on task text (rhyme words span several tokens)."""
    texts = [e["prompt"] + e["completion"] for n in ("rhymes", "constrained") for e in get_task(n).generate("dev", 200, 0)]
    return train_bpe(texts, 500)


def _tokenizer(core, **specials):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=core, **specials)


def _model(kind: str, vocab: int):
    import transformers as tf

    torch.manual_seed(0)
    ids = {"eos_token_id": 0, "bos_token_id": 0, "pad_token_id": 0}
    if kind == "neox":
        return tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=2, intermediate_size=64, **ids))
    if kind == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                  num_attention_heads=4, num_key_value_heads=2, **ids | {"bos_token_id": 1}))
    if kind == "tiny-context":
        return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=vocab, n_positions=8, n_embd=32, n_layer=1, n_head=2, **ids))
    if kind == "mamba":
        return tf.MambaForCausalLM(tf.MambaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, state_size=4, **ids))
    raise KeyError(kind)


def _evaluate(tmp_path, kind, tokenizer, dtype=torch.float32):
    sub = tmp_path / "subs" / kind
    model = _model(kind, len(tokenizer)).to(dtype)
    model.save_pretrained(sub / "model")
    tokenizer.save_pretrained(sub / "model")
    write_submission_toml(sub, kind, "built from a config")
    (outcome,) = evaluate_folder(sub, ["rhymes"], CFG, tmp_path / "results")
    return outcome


@pytest.mark.parametrize("kind", ["neox", "llama"])
def test_other_architectures_get_a_whole_cell(tmp_path, bpe, kind):
    from tokenizers.processors import TemplateProcessing

    core = bpe
    specials = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    if kind == "llama":  # a SentencePiece-like convention: the tokenizer adds a BOS, the harness keeps it
        core = core.__class__.from_str(core.to_str())
        core.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        specials["bos_token"] = "<s>"
    outcome = _evaluate(tmp_path, kind, _tokenizer(core, **specials), torch.bfloat16 if kind == "llama" else torch.float32)
    assert outcome.status == "ok", outcome.detail


@pytest.mark.parametrize("kind, message", [
    ("tiny-context", "longer than the model's context of 8"),
    ("mamba", "models without attention (mamba) are not supported yet"),
])
def test_what_cannot_be_evaluated_is_refused_in_one_line(tmp_path, bpe, kind, message):
    outcome = _evaluate(tmp_path, kind, _tokenizer(bpe, eos_token="<|endoftext|>"))  # no pad token: eos pads
    assert outcome.status == "error" and message in outcome.detail and "\n" not in outcome.detail
