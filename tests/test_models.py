"""Model loading, offsets and hidden-state capture."""

import numpy as np
import torch

from benchmark.models import complete, encode, hidden_states_at, load_model, token_index
from tasks import get_task


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
    a = complete(loaded, prompts, max_new_tokens=4, batch_size=1)
    b = complete(loaded, prompts, max_new_tokens=4, batch_size=6)
    assert a == b
    assert all(c.startswith(" ") and len(c.split()) <= 4 for c in a)
