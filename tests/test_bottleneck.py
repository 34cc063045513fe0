"""The bottleneck attention (benchmark.bottleneck): after position P, nothing before P is
visible, under left and right padding and with a KV cache; at and before P it is plain
causal attention; and a saved bottleneck model loads as one."""

import pytest
import torch

from benchmark.bottleneck import BOTTLENECK, install

P = 4  # the bottleneck position in these tests


@pytest.fixture(scope="module")
def pair(rhymes_tokenizer):
    """The same random weights twice: plain sdpa and bottlenecked at P."""
    from benchmark.models import new_gpt2

    plain = new_gpt2(rhymes_tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=0).eval()
    bottled = new_gpt2(rhymes_tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=0).eval()
    install(bottled, P)
    return plain, bottled


def _logits(model, rows: list[list[int]], left: bool) -> list[torch.Tensor]:
    """Each row's logits at its real tokens, from one padded batch."""
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        at = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, at], mask[i, at] = torch.tensor(r), 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    return [out[i, width - len(r):] if left else out[i, :len(r)] for i, r in enumerate(rows)]


def test_line_1_reaches_later_positions_only_through_the_bottleneck(pair):
    """Two prompts that differ before P: give the second one the first one's states at P
    (every layer a block reads) and every later position computes what the first one does.
    A model without the bottleneck still sees the difference."""
    import contextlib

    from benchmark.causal import patched

    plain, bottled = pair
    a = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13]])
    b = torch.tensor([[40, 41, 7, 8, 9, 10, 11, 12, 13]])  # positions 0 and 1 differ
    for model, separated in ((bottled, True), (plain, False)):
        with torch.no_grad():
            out = model(input_ids=a, output_hidden_states=True)
            with contextlib.ExitStack() as stack:
                for layer in range(model.config.n_layer):  # the inputs of the blocks
                    stack.enter_context(patched(model, layer, [P], out.hidden_states[layer][:, P]))
                logits_b = model(input_ids=b).logits
        same = torch.allclose(out.logits[0, P + 1:], logits_b[0, P + 1:], atol=1e-5)
        assert same == separated


@pytest.mark.parametrize("left", [True, False])
def test_it_is_plain_causal_attention_up_to_the_bottleneck(pair, left):
    plain, bottled = pair
    rows = [[5, 6, 7, 8, 9, 10, 11], [20, 21, 22]]
    for a, b in zip(_logits(plain, rows, left), _logits(bottled, rows, left)):
        assert torch.allclose(a[:P + 1], b[:P + 1], atol=1e-5)
    # ... and not beyond it (the test would pass on an uninstalled model otherwise)
    a, b = _logits(plain, rows, left)[0], _logits(bottled, rows, left)[0]
    assert not torch.allclose(a[P + 1:], b[P + 1:], atol=1e-3)


def test_the_kv_cache_gives_what_the_full_pass_gives(pair):
    _, bottled = pair
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    with torch.no_grad():
        full = bottled(input_ids=ids).logits[0]
        out = bottled(input_ids=ids[:, :3], use_cache=True)
        steps = [out.logits[0, -1]]
        for t in range(3, ids.shape[1]):
            out = bottled(input_ids=ids[:, t:t + 1], cache=out.past_key_values, use_cache=True)
            steps.append(out.logits[0, -1])
    assert torch.allclose(torch.stack(steps), full[2:], atol=1e-4)


def test_a_saved_bottleneck_model_loads_as_one(pair, rhymes_tokenizer, tmp_path):
    from benchmark.models import load_model, random_init_like

    _, bottled = pair
    bottled.save_pretrained(tmp_path, safe_serialization=True)
    rhymes_tokenizer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, device=torch.device("cpu"))
    assert loaded.model.config._attn_implementation == BOTTLENECK
    assert random_init_like(loaded, 0).model.config._attn_implementation == BOTTLENECK  # its control too
    row = [5, 6, 7, 8, 9, 10, 11]
    assert torch.allclose(_logits(loaded.model, [row], True)[0], _logits(bottled, [row], True)[0], atol=1e-5)


@pytest.mark.parametrize("left", [True, False])
def test_padding_does_not_move_the_bottleneck(pair, left):
    """P is counted in real tokens: a row padded in a batch computes what it does alone."""
    _, bottled = pair
    row, longer = [5, 6, 7, 8, 9, 10, 11, 12], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]
    padded = _logits(bottled, [row, longer], left)  # row gets 3 pads
    assert torch.allclose(padded[0], _logits(bottled, [row], left)[0], atol=1e-5)
    assert torch.allclose(padded[1], _logits(bottled, [longer], left)[0], atol=1e-5)


def test_validate_trains_its_bottleneck_planners_at_the_line_break(tmp_path, monkeypatch):
    from benchmark.pipeline import bottleneck_jobs
    from benchmark.validate import BOTTLENECK_STEPS
    from tasks import get_task

    monkeypatch.chdir(tmp_path)
    jobs = bottleneck_jobs((0, 1))
    prompt = get_task("rhymes").generate("test", 1, 0)[0]["prompt"].split()
    assert [j["bottleneck_at"] for j in jobs] == [prompt.index("/")] * 2  # one word, one token
    assert [(j["cfg"].seed, j["cfg"].steps, j["cached"]) for j in jobs] == [(0, BOTTLENECK_STEPS, False),
                                                                          (1, BOTTLENECK_STEPS, False)]
