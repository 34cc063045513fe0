"""The batched, cached tree beam search against a naive reference, and the gain arithmetic."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from benchmark.amplify import (
    amplified_scores,
    beam_search,
    gain_at_lambdas,
    gain_per_position,
    q_mass,
    topk_stable,
)

VOCAB = 40


def tiny_gpt2(attn: str = "sdpa", seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0)
    cfg._attn_implementation = attn
    model = GPT2LMHeadModel(cfg)
    # Random init gives nearly uniform next-token distributions; sharpen them so beams differ.
    with torch.no_grad():
        model.transformer.wte.weight.mul_(8.0)
    return model.eval()


@torch.no_grad()
def reference_beam_search(model, prefix: list[int], width: int, depth: int):
    """Full recomputation, one prefix, no cache: expand every beam by every token, keep top W."""
    beams = [([], 0.0)]
    for _ in range(depth):
        candidates = []
        for b, (toks, score) in enumerate(beams):
            logits = model(torch.tensor([prefix + toks])).logits[0, -1].double()
            logp = torch.log_softmax(logits, -1).tolist()
            candidates += [(score + lp, b, tok, toks + [tok]) for tok, lp in enumerate(logp)]
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        beams = [(c[3], c[0]) for c in candidates[:width]]
    return beams


def assert_same_beams(result_tokens, result_scores, reference):
    assert result_tokens.tolist() == [toks for toks, _ in reference]
    expected = torch.tensor([s for _, s in reference], dtype=torch.float64)
    assert torch.allclose(result_scores.double(), expected, atol=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("width,depth", [(3, 1), (4, 3)])
def test_beam_search_matches_reference_with_mixed_lengths(attn, width, depth):
    model = tiny_gpt2(attn)
    g = torch.Generator().manual_seed(1)
    prefixes = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (1, 5, 9, 3)]
    result = beam_search(model, prefixes, width, depth, batch_size=3)  # two batches, padding
    assert result.tokens.shape == (4, width, depth)
    for i, prefix in enumerate(prefixes):
        assert_same_beams(result.tokens[i], result.logprobs[i], reference_beam_search(model, prefix, width, depth))
    # Best first.
    assert (result.logprobs[:, :-1] >= result.logprobs[:, 1:]).all()


def test_amplified_scores_match_reference_at_every_position():
    model = tiny_gpt2()
    width, depth = 3, 3
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, VOCAB, (3, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    mask[2, 6:] = 0  # right padding
    out = amplified_scores(model, ids, mask, None, width, depth)
    # Default positions: every real position with a real next token.
    expected = [(0, t) for t in range(7)] + [(1, t) for t in range(3, 7)] + [(2, t) for t in range(5)]
    assert list(zip(out["rows"].tolist(), out["ts"].tolist())) == expected
    for k, (r, t) in enumerate(expected):
        prefix = ids[r, : t + 1][mask[r, : t + 1].bool()].tolist()
        ref = reference_beam_search(model, prefix, width, depth)
        assert_same_beams(out["beam_tokens"][k], out["beam_logprobs"][k], ref)
        logp = torch.log_softmax(model(torch.tensor([prefix])).logits[0, -1].double(), -1)
        target = int(ids[r, t + 1])
        assert out["targets"][k] == target
        assert abs(out["logp_true"][k].item() - logp[target].item()) < 1e-4
        weights = torch.softmax(torch.tensor([s for _, s in ref]), 0)
        q_ref = sum(w for w, (toks, _) in zip(weights.tolist(), ref) if toks[0] == target)
        assert abs(out["q_true"][k].item() - q_ref) < 1e-4


def test_chunking_and_prefix_method_agree_with_default():
    model = tiny_gpt2()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, VOCAB, (4, 10), generator=g)
    positions = [(0, 2), (3, 8), (0, 7), (2, 0), (1, 5), (3, 1)]
    base = amplified_scores(model, ids, None, positions, 4, 2)
    tiny_chunks = amplified_scores(model, ids, None, positions, 4, 2, beams_per_chunk=4)  # one position a chunk
    prefix = amplified_scores(model, ids, None, torch.tensor(positions), 4, 2, method="prefix")
    for other in (tiny_chunks, prefix):
        assert torch.equal(other["beam_tokens"], base["beam_tokens"])
        assert torch.allclose(other["beam_logprobs"], base["beam_logprobs"], atol=1e-5)
        assert torch.allclose(other["q_true"], base["q_true"], atol=1e-5)
    assert [(int(r), int(t)) for r, t in zip(base["rows"], base["ts"])] == positions


def test_amplified_scores_restores_training_mode_and_full_logp():
    model = tiny_gpt2().train()
    ids = torch.randint(1, VOCAB, (2, 6))
    out = amplified_scores(model, ids, None, [(0, 1), (1, 4)], 2, 2, return_logp=True)
    assert model.training
    assert out["logp"].shape == (2, VOCAB)
    assert torch.allclose(out["logp"].exp().sum(-1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError):
        amplified_scores(model, ids, None, [(0, 5)], 2, 2)  # the last position has no next token
    assert amplified_scores(model, ids, None, [], 2, 2)["q_true"].shape == (0,)


def test_beams_past_the_context_length_are_refused():
    model = tiny_gpt2()  # 64 positions
    with pytest.raises(ValueError, match="positions"):
        beam_search(model, [[1] * 63], width=2, depth=3)  # needs position id 64
    assert beam_search(model, [[1] * 63], width=2, depth=2).tokens.shape == (1, 2, 2)


def test_topk_stable_breaks_ties_by_lower_index():
    x = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 2.0]])
    vals, idx = topk_stable(x, 3)
    assert idx.tolist() == [[6, 1, 2]] and vals.tolist() == [[2.0, 1.0, 1.0]]
    vals, idx = topk_stable(torch.zeros(2, 9), 4)
    assert idx.tolist() == [[0, 1, 2, 3]] * 2
    vals, idx = topk_stable(torch.tensor([[1.0, 3.0, 1.0]]), 3)  # k = the whole row
    assert idx.tolist() == [[1, 0, 2]]


def test_q_mass_sums_beams_sharing_a_first_token():
    first = torch.tensor([[5, 5, 7]])
    weights = torch.tensor([[0.5, 0.3, 0.2]])
    assert torch.allclose(q_mass(first, weights, torch.tensor([5])), torch.tensor([0.8]))
    assert q_mass(first, weights, torch.tensor([9])).item() == 0.0


def test_gain_formula():
    p = torch.tensor([0.5, 0.1, 0.2], dtype=torch.float64)
    q = torch.tensor([1.0, 0.0, 0.2], dtype=torch.float64)
    lp = p.log()
    lambdas = [0.0, 0.5, 1.0]
    gains = gain_at_lambdas(lp, q, lambdas)
    assert gains[0] == 0.0
    expected = ((0.5 * p + 0.5 * q).log() - lp).mean()
    assert abs(gains[1].item() - expected.item()) < 1e-9
    assert gains[2].item() == -math.inf  # q gives the second token nothing
    per = gain_per_position(lp, q, 0.5)
    assert per.shape == (3,) and abs(per[2].item()) < 1e-9  # p == q there: no gain


def test_the_default_grid_keeps_every_gain_finite_and_evaluation_refuses_lambda_1():
    """A target that no beam starts with (q = 0) costs log(1 - λ) at most: finite for the
    whole grid; λ = 1 (pure beams) would make the mean -inf, so the grid stops below it."""
    from benchmark.amplify import DEFAULT_LAMBDAS
    from benchmark.evaluate import EvalConfig

    lp = torch.tensor([0.5, 0.1], dtype=torch.float64).log()
    q = torch.tensor([1.0, 0.0], dtype=torch.float64)
    gains = gain_at_lambdas(lp, q, DEFAULT_LAMBDAS)
    assert torch.isfinite(gains).all() and max(DEFAULT_LAMBDAS) < 1
    assert gain_per_position(lp, q, 0.9)[1].item() == pytest.approx(math.log(0.1))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        EvalConfig(lambdas=(0.0, 1.0))


# --------------------------------------------------------------------------- lookahead gain


def test_lookahead_gain_is_exactly_zero_for_a_depth_one_search():
    from benchmark.evaluate import EvalConfig, amplification_gain
    from benchmark.validate import gain_items

    model = tiny_gpt2()
    ids = torch.randint(1, VOCAB, (6, 8), generator=torch.Generator().manual_seed(4))
    out = amplified_scores(model, ids, None, None, width=4, depth=1)
    assert torch.equal(out["q_true"], out["q1_true"])  # a depth-1 search is truncation only
    items = gain_items(out, 6)
    gain = amplification_gain(items[:3], items[3:], EvalConfig(n_boot=50))
    assert gain["lookahead"]["all"]["value"] == 0.0 and gain["lookahead"]["all"]["hi"] == 0.0
    assert gain["all"] == gain["depth1"]["all"]


def test_lookahead_gain_fires_where_deeper_search_finds_what_depth_one_cannot():
    """The validate toy (`benchmark.validate.toy_lookahead_model`): A's future is certain,
    so a depth-2 search puts most of q on A where truncation to the top 4 gives ~0.3; on
    text that starts with A, gain(2) - gain(1) must be clearly positive."""
    from benchmark.evaluate import EvalConfig, amplification_gain
    from benchmark.validate import gain_items, toy_lookahead_model

    model, text = toy_lookahead_model()
    positions = [(r, 0) for r in range(len(text))]  # the prediction of the first token
    deep = amplified_scores(model, text, None, positions, width=4, depth=2)
    shallow = amplified_scores(model, text, None, positions, width=4, depth=1)
    assert torch.allclose(deep["q1_true"], shallow["q_true"])
    assert (deep["q_true"] > deep["q1_true"] + 0.2).all()
    items = gain_items(deep, len(text))
    gain = amplification_gain(items[:20], items[20:], EvalConfig(n_boot=200))
    assert gain["lookahead"]["all"]["lo"] > 0.1
