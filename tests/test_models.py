"""Model loading, offsets and hidden-state capture."""

import functools
import numpy as np
import torch

from benchmark.models import complete, encode, hidden_states_at, load_model, token_index
from tasks import get_task
from benchmark.models import train_bpe
from hypothesis import given, settings
from hypothesis import strategies as st


def test_word_tokenizer_encodes_task_text_exactly(rhymes_tokenizer):
    task = get_task("rhymes")
    for ex in task.generate("test", 20, 0):
        text = ex["prompt"] + ex["completion"]
        enc = rhymes_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        assert rhymes_tokenizer.unk_token_id not in enc["input_ids"]
        # Offsets map back to the words of the text, one token per word.
        assert [text[s:e] for s, e in enc["offset_mapping"]] == text.split()
        assert rhymes_tokenizer.decode(enc["input_ids"]) == text


def test_token_index_is_the_last_token_before_the_offset(rhymes_tokenizer):
    text = "couplet : quiet dogs chased the cat / and then"
    ids, mask, offsets = encode(rhymes_tokenizer, [text, "couplet :"], torch.device("cpu"))
    offset = text.index("/") + 1
    t = token_index(offsets[0], mask[0], offset)
    assert rhymes_tokenizer.convert_ids_to_tokens(int(ids[0, t])) == "/"
    # In the padded short row, padding is never chosen.
    assert token_index(offsets[1], mask[1], 100) == 1


def test_hidden_states_do_not_depend_on_batch_size(tiny_model_dir):
    loaded = load_model(tiny_model_dir, torch.device("cpu"))
    task = get_task("rhymes")
    exs = [e for e in task.generate("test", 12, 0) if e["decisions"]]
    texts = [e["prompt"] + e["completion"] for e in exs]
    offsets = [e["decisions"][0]["offset"] for e in exs]
    one = hidden_states_at(loaded, texts, offsets, batch_size=1)
    many = hidden_states_at(loaded, texts, offsets, batch_size=5)
    assert one.shape == (loaded.n_layers + 1, len(texts), 32)
    assert np.abs(one - many).max() < 1e-4
    # Each state is the one at the decision token: equal to a single unpadded forward.
    ids = loaded.tokenizer(texts[0][: offsets[0]], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states
    assert np.abs(ref[-1][0, -1].numpy() - one[-1, 0]).max() < 1e-4


def test_complete_is_batch_independent_and_starts_with_a_space(tiny_model_dir):
    loaded = load_model(tiny_model_dir, torch.device("cpu"))
    prompts = [e["prompt"] for e in get_task("rhymes").generate("test", 6, 0)]
    a = complete(loaded, prompts, max_words=4, batch_size=1)
    b = complete(loaded, prompts, max_words=4, batch_size=6)
    assert a == b
    assert all(c.startswith(" ") and len(c.split()) <= 4 for c in a)


# ---------------------------------------------------------------- any tokenizer, any dtype


def _bpe_tokenizer(texts: list[str], **specials):
    from transformers import PreTrainedTokenizerFast

    core = train_bpe(texts, vocab_size=1000)
    return core, PreTrainedTokenizerFast(tokenizer_object=core, **specials)


def _task_texts() -> list[str]:
    """Task text, a chess line and English prose (digits, punctuation, runs of spaces)."""
    generated = [e["prompt"] + e["completion"] for name in ("rhymes", "constrained")
                 for e in get_task(name).generate("test", 30, 0)]
    return generated + ["mate 2 black : . . k . e2e4 g7g8q h1h8", "Roses, at 12:30 -- red  and\nblue!"] * 5


def test_a_qwen2_folder_keeps_the_ids_of_its_saved_tokenizer(tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    texts = _task_texts()
    _, tok = _bpe_tokenizer(texts, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    Qwen2ForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    saved = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    want = [saved.encode(t, add_special_tokens=False).ids for t in texts]
    auto = AutoTokenizer.from_pretrained(tmp_path)  # what transformers alone would give
    assert sum(auto(t, add_special_tokens=False)["input_ids"] != w for t, w in zip(texts, want)) > 0
    loaded = load_model(tmp_path, torch.device("cpu"))
    assert [loaded.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts] == want
    assert loaded.tokenizer.eos_token == "<|endoftext|>"


def test_a_tokenizer_that_adds_a_bos_gets_it_and_positions_follow(tmp_path):
    from tokenizers.processors import TemplateProcessing
    from transformers import LlamaConfig, LlamaForCausalLM

    from benchmark.models import adds_bos, encode_examples

    texts = _task_texts()
    core, _ = _bpe_tokenizer(texts)
    core.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", core.token_to_id("<s>"))])
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, bos_token_id=tok.bos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, torch.device("cpu"))
    assert adds_bos(loaded.tokenizer)
    example = get_task("rhymes").generate("test", 1, 0)[0]
    text, offset = example["prompt"], example["decisions"][0]["offset"]
    ids, mask, offsets = encode(loaded.tokenizer, [text], torch.device("cpu"))
    assert int(ids[0, 0]) == loaded.tokenizer.bos_token_id
    decision = token_index(offsets[0], mask[0], offset)
    assert text[int(offsets[0][decision][0]):int(offsets[0][decision][1])].strip() == "/"
    encoded = encode_examples(loaded.tokenizer, [example], add_eos=True)[0]
    assert encoded["ids"][0] == loaded.tokenizer.bos_token_id and encoded["decisions"][0] == decision


def test_the_reference_tokenizer_adds_no_bos(rhymes_tokenizer):
    from benchmark.models import adds_bos

    assert not adds_bos(rhymes_tokenizer)


def test_half_precision_weights_run_in_fp32_on_cpu(tmp_path, tiny_model_dir):
    import shutil

    from transformers import AutoModelForCausalLM

    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, tmp_path / name)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).half()
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, torch.device("cpu"))
    full = load_model(tiny_model_dir, torch.device("cpu"))
    assert loaded.model.dtype == torch.float32
    prompts = [e["prompt"] for e in get_task("rhymes").generate("test", 4, 0)]
    assert complete(loaded, prompts, 3) == complete(full, prompts, 3)  # fp16-rounded weights, same greedy words


def test_a_budget_in_words_is_cut_at_the_line_end():
    from benchmark.models import within_budget

    assert within_budget(" a b\nc d", 5) == " a b"
    assert within_budget("\n a  b c", 2) == " a b"
    assert within_budget("", 3) == " "


def test_a_budget_is_counted_in_words_under_a_subword_tokenizer(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    texts = _task_texts()
    _, tok = _bpe_tokenizer(texts, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, torch.device("cpu"))
    prompts = texts[:8]
    out = complete(loaded, prompts, max_words=3)
    assert all(c.startswith(" ") and len(c.split()) <= 3 and "\n" not in c for c in out)
    tokens = [len(loaded.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in out]
    assert max(tokens) > 3  # a word budget: more tokens than words were generated
    assert complete(loaded, prompts, max_words=3, batch_size=3) == out


# ---------------------------------------------------------------- rime pieces (the stand-in's tokenizer)


def test_spelled_rime_is_the_last_vowels_and_what_follows():
    from benchmark.models import spelled_rime

    assert [spelled_rime(w) for w in ("night", "delight", "stone", "away", "Sky", "the", "and", "a")] == [
        "ight", "ight", "one", "ay", "y", "e", None, None]


@settings(max_examples=40, deadline=None)
@given(words=st.lists(st.sampled_from(["night", "delight", "stone", "away", "The", "sky", "quietly", "and",
                                        "carried", "bright", "a"]) | st.from_regex(r"[A-Za-z]{1,9}", fullmatch=True),
                      min_size=1, max_size=8),
       seps=st.lists(st.sampled_from([" ", ", ", ".\n", "\n", "! "]), min_size=8, max_size=8))
def test_a_rime_piece_tokenizer_ends_every_word_on_its_rime_and_keeps_the_text(words, seps):
    from benchmark.models import spelled_rime

    text = "".join(w + s for w, s in zip(words, seps))
    tok = _rime_tokenizer()
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert tok.decode(enc["input_ids"]) == text
    ends = {e for _, e in enc["offset_mapping"]}
    starts = {s for s, _ in enc["offset_mapping"]}
    at = 0
    for w, s in zip(words, seps):
        rime = spelled_rime(w)
        if rime:  # a token boundary falls where the rime starts, and one where the word ends
            assert at + len(w) - len(rime) in starts, (w, rime)
        assert at + len(w) in ends
        at += len(w) + len(s)


@functools.lru_cache(maxsize=1)
def _rime_tokenizer():
    """One tokenizer for the examples (training it is the slow part)."""
    from benchmark.models import bpe_tokenizer

    return bpe_tokenizer(_task_texts(), 600, rime_pieces=True)


def test_a_rime_piece_tokenizer_reloads_with_its_ids(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _rime_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    texts = _task_texts()
    loaded = load_model(tmp_path, torch.device("cpu"))
    assert [loaded.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts] == \
        [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert loaded.tokenizer.convert_ids_to_tokens(loaded.tokenizer(" night")["input_ids"])[-1] == "ight"
