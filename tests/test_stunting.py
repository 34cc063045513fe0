"""Myopic attention, the stunted losses and their weights."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from benchmark.amplify import amplified_scores, beam_search
from benchmark.stunting import (
    StuntConfig,
    amplification_penalty,
    balance_weights,
    prepare_model,
    restore_attention,
    stunt_weights,
    training_loss,
)

VOCAB = 30


def tiny_gpt2(n_layer: int = 2, seed: int = 0, dropout: float = 0.0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=n_layer, n_head=4,
                     resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0)
    cfg._attn_implementation = "sdpa"
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        model.transformer.wte.weight.mul_(8.0)  # peaked distributions, so beams differ
    return model


def batch(seed: int = 0, B: int = 3, T: int = 10):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (B, T), generator=g)
    attn = torch.ones_like(ids)
    attn[1, 7:] = 0  # right padding, as the training collate makes it
    loss = attn.bool().clone()
    loss[:, 0] = False  # a one-token "prompt"
    loss[:, -1] = False
    loss[1, 6:] = False  # position 6 of row 1 has no real next token
    return ids, attn, loss


def grad_to_earlier(model, t: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the loss at position t w.r.t. the input embeddings: (positions < t, position t)."""
    ids = torch.randint(1, VOCAB, (1, 10), generator=torch.Generator().manual_seed(seed))
    embeds = model.transformer.wte(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits
    torch.nn.functional.cross_entropy(logits[0, t][None], ids[0, t + 1][None]).backward()
    return embeds.grad[0, :t], embeds.grad[0, t]


# --------------------------------------------------------------------------- myopic


def test_myopic_forward_equals_ordinary_with_padding():
    ordinary = tiny_gpt2().eval()
    myopic = prepare_model(tiny_gpt2().eval(), "myopic", StuntConfig(beta=0.0))
    assert myopic.config._attn_implementation == "myopic"
    ids, attn, _ = batch()
    attn[2, :2] = 0  # and some left padding
    a = ordinary(input_ids=ids, attention_mask=attn).logits
    b = myopic(input_ids=ids, attention_mask=attn).logits
    real = attn.bool()
    assert (a[real] - b[real]).abs().max() < 1e-5


def test_myopic_blocks_gradient_into_earlier_positions():
    earlier, own = grad_to_earlier(tiny_gpt2().eval())
    assert earlier.abs().sum() > 0  # an ordinary model sends gradient back
    earlier, own = grad_to_earlier(prepare_model(tiny_gpt2().eval(), "myopic", StuntConfig(beta=0.0)))
    assert torch.all(earlier == 0) and own.abs().sum() > 0
    half, _ = grad_to_earlier(prepare_model(tiny_gpt2().eval(), "myopic", StuntConfig(beta=0.5)))
    ordinary, _ = grad_to_earlier(tiny_gpt2().eval())
    assert 0 < half.norm() < ordinary.norm() and not torch.allclose(half, ordinary)


def test_myopic_beta_scales_the_gradient_exactly_in_one_layer():
    # With one layer, the only path from an earlier position is one key/value: scaled by beta.
    ordinary, own_ordinary = grad_to_earlier(tiny_gpt2(n_layer=1).eval())
    for beta in (0.5, 1.0):
        scaled, own = grad_to_earlier(prepare_model(tiny_gpt2(n_layer=1).eval(), "myopic", StuntConfig(beta=beta)))
        assert torch.allclose(scaled, beta * ordinary, atol=1e-6)
        assert torch.allclose(own, own_ordinary, atol=1e-6)


def test_myopic_model_saves_and_loads_as_an_ordinary_gpt2(tmp_path):
    model = prepare_model(tiny_gpt2(), "myopic", StuntConfig())
    ids, attn, loss_mask = batch()
    loss, _ = training_loss(model.train(), "myopic", ids, attn, loss_mask, StuntConfig())
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    model.save_pretrained(tmp_path / "as_is")  # even without restoring, nothing myopic is saved
    restore_attention(model.eval()).save_pretrained(tmp_path / "restored")
    for folder in ("as_is", "restored"):
        loaded = GPT2LMHeadModel.from_pretrained(tmp_path / folder).eval()
        assert loaded.config._attn_implementation in ("sdpa", "eager")
        assert not hasattr(loaded.transformer.h[0].attn, "myopic_beta")
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)


# --------------------------------------------------------------------------- weights


def fake_amp(rows, ts, p_true, q_true):
    return {"rows": torch.tensor(rows), "ts": torch.tensor(ts),
            "logp_true": torch.tensor(p_true, dtype=torch.float64).log(),
            "q_true": torch.tensor(q_true, dtype=torch.float64)}


def test_skip_drops_exactly_the_positions_where_amplification_helps():
    loss_mask = torch.zeros(2, 5, dtype=torch.bool)
    loss_mask[0, :4] = True
    loss_mask[1, 1:3] = True
    # q > p at (0,1) and (1,2); ties and q < p are kept.
    amp = fake_amp(rows=[0, 0, 0, 0, 1, 1], ts=[0, 1, 2, 3, 1, 2],
                   p_true=[0.5, 0.2, 0.3, 0.9, 0.4, 0.1], q_true=[0.1, 0.6, 0.3, 0.0, 0.2, 0.7])
    weights, stats = stunt_weights("stunted-skip", loss_mask, amp, StuntConfig(positions="all"))
    expected = torch.zeros(2, 4, dtype=torch.float64)
    expected[0, [0, 2, 3]] = 1
    expected[1, 1] = 1
    assert torch.equal(weights, expected)
    assert abs(stats["frac_dropped"] - 2 / 6) < 1e-12
    # With positions="decisions" the positions not amplified keep their ordinary weight 1.
    one = fake_amp([0], [1], [0.2], [0.6])
    weights, _ = stunt_weights("stunted-skip", loss_mask, one, StuntConfig(positions="decisions"))
    assert weights[0].tolist() == [1, 0, 1, 1] and weights[1].tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("seed", range(5))
def test_balance_weights_balance_count_and_magnitude(seed):
    g = torch.Generator().manual_seed(seed)
    n = 200
    helps = torch.rand(n, generator=g) < 0.3
    magnitude = torch.rand(n, generator=g, dtype=torch.float64)
    magnitude[helps] = magnitude[helps] * 0.6 + 0.3  # a different spread, overlapping ranges
    w, info = balance_weights(helps, magnitude)
    assert (w >= 0).all()
    assert abs(w.sum().item() - n) < 1e-9  # mean weight 1
    assert abs(w[helps].sum().item() - w[~helps].sum().item()) < 1e-6
    assert abs((w * magnitude)[helps].sum().item() - (w * magnitude)[~helps].sum().item()) < 1e-6
    assert info["magnitude_gap"] < 1e-9


def test_balance_weights_edge_cases():
    # Disjoint magnitude ranges: counts still balance, the remaining magnitude gap is reported.
    helps = torch.tensor([True, True, False, False, False])
    w, info = balance_weights(helps, torch.tensor([0.8, 0.9, 0.1, 0.2, 0.3], dtype=torch.float64))
    assert (w >= 0).all() and abs(w[helps].sum() - w[~helps].sum()) < 1e-9
    assert info["magnitude_gap"] > 0
    # One group empty: nothing to balance against, uniform weights.
    w, info = balance_weights(torch.zeros(4, dtype=torch.bool), torch.rand(4, dtype=torch.float64))
    assert torch.equal(w, torch.ones(4, dtype=torch.float64)) and info["degenerate"] == 1.0


def test_penalty_is_q_weighted_probability_of_wrong_amplified_tokens():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], requires_grad=True)
    p = torch.softmax(logits, -1)[0]
    first = torch.tensor([[0, 1, 1]])
    weights = torch.tensor([[0.5, 0.3, 0.2]])
    pen = amplification_penalty(logits, first, weights, targets=torch.tensor([0]))
    assert torch.allclose(pen, (0.3 + 0.2) * p[1:2])  # beam 0 starts with the truth
    assert 0 <= pen.item() <= 1
    pen.sum().backward()
    assert logits.grad[0, 1] > 0  # descent lowers the wrong amplified token's logit
    big = torch.tensor([[100.0, -100.0, -100.0, -100.0]])
    assert 0 <= amplification_penalty(big, torch.tensor([[0]]), torch.tensor([[1.0]]), torch.tensor([3])).item() <= 1


# --------------------------------------------------------------------------- end to end


def constructed_batch(model, pattern: list[list[bool]], width: int, depth: int) -> torch.Tensor:
    """Token sequences built left to right so amplification helps exactly where pattern says.

    The beams from a prefix do not depend on the next token, so x_{t+1} can be chosen after
    them: a first token with q > p for "helps" (one always exists: q's support has total q
    mass 1 but p mass < 1), a token outside q's support (q = 0 < p) otherwise.
    """
    rows = []
    for row_pattern in pattern:
        seq = [1]
        for helps in row_pattern:
            beams = beam_search(model, [seq], width, depth)
            weights = torch.softmax(beams.logprobs[0].double(), 0)
            first = beams.tokens[0, :, 0]
            p = torch.softmax(model(torch.tensor([seq])).logits[0, -1].double(), -1)
            q = torch.zeros(VOCAB, dtype=torch.float64).index_add_(0, first, weights)
            candidates = ((q > p) if helps else (q == 0)).nonzero()[:, 0]
            seq.append(int(candidates[0]))
        rows.append(seq)
    return torch.tensor(rows)


def test_training_loss_variants_end_to_end():
    model = tiny_gpt2().eval()
    cfg = StuntConfig(width=3, depth=2, positions="all", penalty_weight=0.7)
    pattern = [[True, False, False, True, False, True], [False, True, True, False, False, False]]
    with torch.no_grad():
        ids = constructed_batch(model, pattern, cfg.width, cfg.depth)
    attn = torch.ones_like(ids)
    loss_mask = torch.ones_like(ids, dtype=torch.bool)
    loss_mask[:, -1] = False
    helps = torch.tensor(pattern)

    amp = amplified_scores(model, ids, attn, None, cfg.width, cfg.depth)
    assert torch.equal(amp["q_true"] > amp["logp_true"].exp(), helps.flatten())

    with torch.no_grad():
        logits = model(ids).logits
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1),
                                           reduction="none").view(2, -1)
    plain, stats = training_loss(model, "unstunted", ids, attn, loss_mask, cfg)
    assert abs(plain.item() - ce.mean().item()) < 1e-5 and abs(stats["ce"] - plain.item()) < 1e-6

    skip, stats = training_loss(model, "stunted-skip", ids, attn, loss_mask, cfg)
    assert abs(skip.item() - ce[~helps].mean().item()) < 1e-5
    assert abs(stats["frac_dropped"] - helps.double().mean().item()) < 1e-9

    balance, stats = training_loss(model, "stunted-balance", ids, attn, loss_mask, cfg)
    weights, _ = stunt_weights("stunted-balance", loss_mask, amp, cfg)
    magnitude = 1 - amp["logp_true"].double().exp().view(2, -1)  # the default "grad" measure
    assert (weights >= 0).all() and abs(weights[helps].sum() - weights[~helps].sum()) < 1e-6
    if magnitude[helps].max() >= magnitude[~helps].min() and magnitude[~helps].max() >= magnitude[helps].min():
        wm = weights * magnitude
        assert abs(wm[helps].sum() - wm[~helps].sum()) < 1e-6 and stats["balance_magnitude_gap"] < 1e-9
    assert abs(balance.item() - ((weights * ce).sum() / weights.sum()).item()) < 1e-5

    penalty, stats = training_loss(model, "stunted-penalty", ids, attn, loss_mask, cfg)
    pen = amplification_penalty(logits[amp["rows"], amp["ts"]], amp["first_tokens"], amp["beam_weights"],
                                amp["targets"])
    assert abs(penalty.item() - (ce.mean() + 0.7 * pen.mean()).item()) < 1e-5
    assert 0 <= stats["penalty"] <= 1


def test_training_step_runs_for_every_variant_and_sampling_mode():
    ids, attn, loss_mask = batch()
    decisions = torch.zeros_like(loss_mask)
    decisions[0, 3] = decisions[2, 5] = True
    runs = [(v, "sample") for v in ("unstunted", "myopic", "stunted-skip", "stunted-penalty", "stunted-balance")]
    runs += [("stunted-skip", "decisions"), ("stunted-balance", "decisions")]
    for variant, positions in runs:
        cfg = StuntConfig(width=2, depth=2, positions=positions, sample_frac=0.3)
        model = prepare_model(tiny_gpt2(n_layer=1, dropout=0.1), variant, cfg).train()
        loss, stats = training_loss(model, variant, ids, attn, loss_mask, cfg, decision_mask=decisions)
        loss.backward()
        assert model.training  # the amplification pass put training mode back
        assert torch.isfinite(loss) and all(isinstance(v, float) for v in stats.values())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()) or loss.item() == 0
    with pytest.raises(ValueError):
        training_loss(tiny_gpt2(), "myopic", ids, attn, loss_mask, StuntConfig())  # not prepared
    bad = loss_mask.clone()
    bad[0, -1] = True
    with pytest.raises(ValueError):
        training_loss(tiny_gpt2(), "unstunted", ids, attn, bad, StuntConfig())
