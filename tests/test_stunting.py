"""Myopic attention, the stunted losses and their weights."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from contextlib import ExitStack

from benchmark.amplify import amplified_scores, beam_search, lookahead_movement, lookahead_shift, sampled_scores
from benchmark.variants import MASKED, VARIANTS
from benchmark.stunting import (
    StuntConfig,
    amplification_penalty,
    balance_weights,
    new_amplifier,
    prepared,
    stunt_weights,
    training_loss,
)

# Models entered into `prepared` by `prepare_model` stay prepared until the test ends.
_STACK = ExitStack()


def prepare_model(model, variant, cfg):
    return _STACK.enter_context(prepared(model, variant, cfg))

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


def test_myopic_projections_learn_from_every_position_that_reads_them():
    """Wu et al.'s myopic descent cuts the gradient into earlier *states*, not into the
    weights that read them: with one layer (whose inputs are the embeddings) the key/value
    projection's gradient from the loss at t equals the ordinary one, cross-position reads
    included. Detaching the keys and values themselves (the rule up to harness 5) left
    them only the diagonal's share and fails this."""

    def attn_weight_grad(model):
        grad_to_earlier(model)
        width = model.config.n_embd  # c_attn's columns: queries, keys, values
        return model.transformer.h[0].attn.c_attn.weight.grad[:, width:]

    ordinary = attn_weight_grad(tiny_gpt2(n_layer=1).eval())
    myopic = attn_weight_grad(prepare_model(tiny_gpt2(n_layer=1).eval(), "myopic", StuntConfig(beta=0.0)))
    assert ordinary.abs().sum() > 0 and torch.allclose(myopic, ordinary, atol=1e-6)


def test_a_changed_rule_retrains_its_variant_only():
    from benchmark.train import TrainConfig

    assert TrainConfig(variant="myopic").to_dict()["loss_version"] == 2  # models of rule 1 retrain
    assert "loss_version" not in TrainConfig(variant="unstunted").to_dict()  # the others stay cached


def test_myopic_model_saves_and_loads_as_an_ordinary_gpt2(tmp_path):
    model = tiny_gpt2()
    ids, attn, loss_mask = batch()
    with prepared(model, "myopic", StuntConfig()):
        assert model.config._attn_implementation == "myopic"
        loss, _ = training_loss(model.train(), "myopic", ids, attn, loss_mask, StuntConfig())
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        model.save_pretrained(tmp_path / "inside")  # even inside, nothing myopic is saved
    # Leaving the block restores the standard attention and removes the attributes.
    assert model.config._attn_implementation == "sdpa"
    assert not any("myopic_beta" in vars(m) for m in model.modules())
    model.save_pretrained(tmp_path / "after")
    for folder in ("inside", "after"):
        loaded = GPT2LMHeadModel.from_pretrained(tmp_path / folder).eval()
        assert loaded.config._attn_implementation in ("sdpa", "eager")
        assert not hasattr(loaded.transformer.h[0].attn, "myopic_beta")
        assert torch.allclose(loaded(ids).logits, model.eval()(ids).logits, atol=1e-5)


def test_prepared_restores_the_model_even_when_training_fails():
    model = tiny_gpt2()
    with pytest.raises(RuntimeError):
        with prepared(model, "myopic", StuntConfig()):
            raise RuntimeError("a step failed")
    assert model.config._attn_implementation == "sdpa"
    assert not any("myopic_beta" in vars(m) for m in model.modules())
    with pytest.raises(ValueError):
        with prepared(model, "no-such-variant", StuntConfig()):
            pass


# --------------------------------------------------------------------------- weights


def fake_amp(rows, ts, q_true, q1_true, targets=None):
    n = len(rows)
    return {"rows": torch.tensor(rows), "ts": torch.tensor(ts),
            "q_true": torch.tensor(q_true, dtype=torch.float64),
            "q1_true": torch.tensor(q1_true, dtype=torch.float64),
            "targets": torch.tensor(targets if targets is not None else [0] * n)}


def test_skip_drops_exactly_the_positions_where_deeper_search_beats_truncation():
    loss_mask = torch.zeros(2, 5, dtype=torch.bool)
    loss_mask[0, :4] = True
    loss_mask[1, 1:3] = True
    # q_D > q_1 at (0,1) and (1,2); ties (a depth-1 search) and q_D < q_1 are kept.
    amp = fake_amp(rows=[0, 0, 0, 0, 1, 1], ts=[0, 1, 2, 3, 1, 2],
                   q_true=[0.1, 0.6, 0.3, 0.0, 0.2, 0.7], q1_true=[0.5, 0.2, 0.3, 0.9, 0.4, 0.1])
    weights, stats = stunt_weights("stunted-skip", loss_mask, amp, StuntConfig(positions="all"))
    expected = torch.zeros(2, 4, dtype=torch.float64)
    expected[0, [0, 2, 3]] = 1
    expected[1, 1] = 1
    assert torch.equal(weights, expected)
    assert abs(stats["frac_dropped"] - 2 / 6) < 1e-12
    # Positions not amplified keep their ordinary weight 1 (any positions mode).
    one = fake_amp([0], [1], [0.6], [0.2])
    for positions in ("decisions", "sample"):
        weights, _ = stunt_weights("stunted-skip", loss_mask, one, StuntConfig(positions=positions))
        assert weights[0].tolist() == [1, 0, 1, 1] and weights[1].tolist() == [0, 1, 1, 0]


def movements(seed: int, n: int = 400, mean: float = 0.02) -> torch.Tensor:
    """Heavy-tailed movements with a nonzero mean, as stunting sees them."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, generator=g, dtype=torch.float64) * 0.05
    m[torch.rand(n, generator=g) < 0.05] *= 10  # a few extreme tokens
    return m + mean


@pytest.mark.parametrize("seed", range(5))
def test_balance_weights_cancel_magnitude_and_count_near_one(seed):
    m = movements(seed)
    w, info = balance_weights(m, min_ess=0.5)
    n = m.numel()
    assert (w >= 0).all()
    assert abs(w.sum().item() - n) < 1e-6  # mean weight 1
    assert abs((w * m).sum().item()) < 1e-6 * n  # magnitude balanced
    assert info["ess"] >= 0.5 and info["residual"] < 1e-6 and info["shrink"] == 1.0
    if info["count_balanced"]:
        assert abs((w * torch.sign(m)).sum().item()) < 1e-6 * n
    # Near 1 for most tokens: no collapse onto the extreme ones.
    assert (w.max() / n) < 0.02 and ((w - 1).abs() < 0.5).double().mean() > 0.5


def test_balance_weights_count_gives_way_before_magnitude():
    # 10% of tokens move toward q: balancing the count would need ~5x weights on them.
    m = torch.cat([torch.full((10,), 0.1), -torch.linspace(0.001, 0.02, 90)]).double()
    w, info = balance_weights(m, min_ess=0.5)
    assert info["count_balanced"] == 0.0 and info["ess"] >= 0.5
    assert abs((w * m).sum().item()) < 1e-6 and (w >= 0).all()


def test_balance_weights_edge_cases():
    # Every movement has one sign: nothing can cancel it; uniform weights, residual 1.
    w, info = balance_weights(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    assert torch.equal(w, torch.ones(3, dtype=torch.float64)) and info["shrink"] == 0.0
    assert abs(info["residual"] - 1.0) < 1e-12
    # A depth-1 search moves nothing: weights stay exactly 1.
    w, info = balance_weights(torch.zeros(5, dtype=torch.float64))
    assert torch.allclose(w, torch.ones(5, dtype=torch.float64)) and info["residual"] == 0.0
    # Too lopsided for ESS >= min_ess: the weights go only part of the way, and say so.
    m = torch.cat([torch.full((2,), -0.01), torch.full((98,), 0.05)]).double()
    w, info = balance_weights(m, min_ess=0.5)
    assert 0 < info["shrink"] < 1 and info["ess"] >= 0.5 - 1e-9 and info["residual"] > 0
    # Tokens whose movement was not computed count at their expected movement.
    m = movements(7, n=200)
    w, info = balance_weights(m, others=200, min_ess=0.3)
    assert abs((w * m).sum().item() + 200 * m.mean().item()) < 1e-6 * 400 or info["shrink"] < 1


def toy_amp(logits_top, beam_first, beam_weights, target):
    """An amplified_scores-like dict for one position over the top tokens 0..W-1."""
    top_logp = torch.log_softmax(torch.tensor([logits_top], dtype=torch.float64), -1)
    return {"top_tokens": torch.arange(len(logits_top))[None], "top_logp": top_logp,
            "first_tokens": torch.tensor([beam_first]), "beam_weights": torch.tensor([beam_weights], dtype=torch.float64),
            "targets": torch.tensor([target])}


def test_lookahead_shift_and_movement_are_zero_for_a_depth_one_search():
    amp = toy_amp([2.0, 1.0, 0.0], [0, 1, 2], torch.softmax(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64), 0).tolist(), 1)
    assert lookahead_shift(amp).abs().max() < 1e-12
    assert lookahead_movement(amp).abs().max() < 1e-12
    # A search that moves all mass onto the true token: positive movement toward it.
    deeper = toy_amp([2.0, 1.0, 0.0], [1, 1, 1], [0.5, 0.3, 0.2], 1)
    assert lookahead_movement(deeper).item() > 0
    # ... and onto the wrong token p already favours: negative. (Onto a wrong token p
    # neglects it can be positive: a step on the truth also takes mass from p's favourite.)
    assert lookahead_movement(toy_amp([2.0, 1.0, 0.0], [0, 0, 0], [0.5, 0.3, 0.2], 1)).item() < 0


def test_penalty_pushes_only_what_deeper_search_promotes():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], requires_grad=True)
    p = torch.softmax(logits, -1)[0]
    amp = toy_amp([2.0, 1.0, 0.0], [0, 2, 2], [0.5, 0.3, 0.2], 0)
    amp["top_logp"] = torch.log_softmax(logits.detach()[:, :3].double(), -1)
    shift = lookahead_shift(amp)[0]
    pen = amplification_penalty(logits, amp)
    expected = sum(max(float(shift[x]), 0.0) * p[x] for x in (1, 2))
    assert torch.allclose(pen, expected.reshape(1))
    assert 0 <= pen.item() <= 1
    pen.sum().backward()
    assert logits.grad[0, 2] > 0  # descent lowers the promoted wrong token's logit
    assert logits.grad[0, 1] <= 0 or shift[1] <= 0  # a token search demoted is not pushed down
    # A depth-1 search (q_D = q_1) gives no penalty at all.
    flat = toy_amp([2.0, 1.0, 0.0], [0, 1, 2], torch.softmax(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64), 0).tolist(), 1)
    assert amplification_penalty(logits.detach()[:, :4], flat).abs().item() < 1e-12


# --------------------------------------------------------------------------- end to end


@torch.no_grad()
def constructed_batch(model, pattern: list[list[bool]], width: int, depth: int) -> torch.Tensor:
    """Token sequences built left to right so that deeper search beats truncation exactly
    where ``pattern`` says. The beams from a prefix do not depend on the next token, so
    x_{t+1} can be chosen after them: a top-W token with q_D > q_1 for "helps" (one exists
    whenever the search moves any mass), one with q_D <= q_1 otherwise."""
    rows = []
    for row_pattern in pattern:
        seq = [1]
        for helps in row_pattern:
            beams = beam_search(model, [seq], width, depth)
            q_d = torch.zeros(VOCAB, dtype=torch.float64).index_add_(
                0, beams.tokens[0, :, 0], torch.softmax(beams.logprobs[0].double(), 0))
            logp = torch.log_softmax(model(torch.tensor([seq])).logits[0, -1].double(), -1)
            top = logp.topk(width).indices
            q_1 = torch.zeros(VOCAB, dtype=torch.float64)
            q_1[top] = torch.softmax(logp[top], 0)
            candidates = ((q_d > q_1 + 1e-9) if helps else (q_d < q_1 - 1e-9)).nonzero()[:, 0]
            seq.append(int(candidates[0]))
        rows.append(seq)
    return torch.tensor(rows)


def test_training_loss_variants_end_to_end():
    model = tiny_gpt2().eval()
    cfg = StuntConfig(width=3, depth=2, positions="all", penalty_weight=0.7)
    pattern = [[True, False, False, True, False, True], [False, True, True, False, False, False]]
    ids = constructed_batch(model, pattern, cfg.width, cfg.depth)
    attn = torch.ones_like(ids)
    loss_mask = torch.ones_like(ids, dtype=torch.bool)
    loss_mask[:, -1] = False

    amp = amplified_scores(model, ids, attn, None, cfg.width, cfg.depth)
    helps = (amp["q_true"] > amp["q1_true"]).view(2, -1)
    assert torch.equal(helps, torch.tensor(pattern))
    with torch.no_grad():
        logits = model(ids).logits
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1),
                                           reduction="none").view(2, -1)
    plain, stats = training_loss(model, "unstunted", ids, attn, loss_mask, cfg)
    assert abs(plain.item() - ce.mean().item()) < 1e-5 and abs(stats["ce"] - plain.item()) < 1e-6

    skip, stats = training_loss(model, "stunted-skip", ids, attn, loss_mask, cfg)
    # Skipped tokens remove their update; the others keep the unstunted scale (divide by all).
    assert abs(skip.item() - (ce * ~helps).sum().item() / ce.numel()) < 1e-5
    assert abs(stats["frac_dropped"] - helps.double().mean().item()) < 1e-9

    balance, stats = training_loss(model, "stunted-balance", ids, attn, loss_mask, cfg)
    weights, _ = stunt_weights("stunted-balance", loss_mask, amp, cfg)
    movement = lookahead_movement(amp).view(2, -1)
    assert (weights >= 0).all()
    if stats["balance_shrink"] == 1.0:
        assert abs((weights * movement).sum().item()) < 1e-6
    assert abs(balance.item() - ((weights * ce).sum() / ce.numel()).item()) < 1e-4

    penalty, stats = training_loss(model, "stunted-penalty", ids, attn, loss_mask, cfg)
    pen = amplification_penalty(logits[amp["rows"], amp["ts"]], amp)
    assert abs(penalty.item() - (ce.mean() + 0.7 * pen.mean()).item()) < 1e-5
    assert 0 <= stats["penalty"] <= 1


def test_every_stunted_rule_is_plain_training_for_a_depth_one_search():
    model = tiny_gpt2().eval()
    ids, attn, loss_mask = batch()
    plain, _ = training_loss(model, "unstunted", ids, attn, loss_mask, StuntConfig(depth=1))
    for variant in ("stunted-skip", "stunted-penalty", "stunted-balance", "stunted-sampled", "stunted-learned"):
        cfg = StuntConfig(width=3, depth=1, positions="all")
        amplifier = new_amplifier(variant, cfg, seed=0)
        if amplifier is not None:  # trained first, so only the depth-1 search makes q_A = p
            amplifier.amplify(amplified_scores(model, ids, attn, None, 3, 2))
            amplifier.retrain(0)
        loss, stats = training_loss(model, variant, ids, attn, loss_mask, cfg, amplifier=amplifier)
        assert abs(loss.item() - plain.item()) < 1e-5, variant
        assert stats["frac_helps"] == 0.0


def test_balance_holds_on_real_training_batches():
    """The issue's criterion: on batches of the rhymes task, with a briefly trained model,
    |mean movement| <= 0.1 x mean |movement| under the weights, with ESS >= 50%."""
    from benchmark.models import encode_examples, new_gpt2, word_tokenizer
    from benchmark.train import collate
    from tasks import get_task

    task = get_task("rhymes")
    tok = word_tokenizer(task.vocabulary())
    items = encode_examples(tok, list(task.generate("train", 160, 0)), add_eos=True)
    model = new_gpt2(tok, 2, 32, 2, 64, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cfg = StuntConfig(width=4, depth=2, positions="all")
    for step in range(30):  # a little training, so p is neither uniform nor trained
        b = collate(items[(step % 10) * 16:(step % 10 + 1) * 16], tok.pad_token_id, torch.device("cpu"))
        loss, _ = training_loss(model.train(), "unstunted", b.input_ids, b.attention_mask, b.loss_mask, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for start in range(0, 160, 32):
        b = collate(items[start:start + 32], tok.pad_token_id, torch.device("cpu"))
        _, stats = training_loss(model, "stunted-balance", b.input_ids, b.attention_mask, b.loss_mask, cfg)
        assert stats["balance_ess"] >= 0.5
        assert stats["balance_residual"] <= 0.1, stats


def test_training_step_runs_for_every_variant_and_sampling_mode():
    ids, attn, loss_mask = batch()
    decisions = torch.zeros_like(loss_mask)
    decisions[0, 3] = decisions[2, 5] = True
    runs = [(v, "sample") for v in VARIANTS if v != MASKED]  # masked: its own objective (tests/test_masked.py)
    runs += [(v, "decisions") for v in ("stunted-skip", "stunted-balance", "stunted-sampled", "stunted-learned")]
    for variant, positions in runs:
        cfg = StuntConfig(width=2, depth=2, positions=positions, sample_frac=0.3)
        with prepared(tiny_gpt2(n_layer=1, dropout=0.1), variant, cfg) as model:
            model.train()
            loss, stats = training_loss(model, variant, ids, attn, loss_mask, cfg, decision_mask=decisions,
                                        amplifier=new_amplifier(variant, cfg, seed=0))
            loss.backward()
            assert model.training  # the amplification pass put training mode back
            assert torch.isfinite(loss) and all(isinstance(v, float) for v in stats.values())
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ValueError):
        training_loss(tiny_gpt2(), "myopic", ids, attn, loss_mask, StuntConfig())  # not prepared
    with pytest.raises(ValueError):
        training_loss(tiny_gpt2(), "stunted-learned", ids, attn, loss_mask, StuntConfig())  # no amplifier
    with pytest.raises(ValueError, match="its own objective"):
        training_loss(tiny_gpt2(), MASKED, ids, attn, loss_mask, StuntConfig())
    bad = loss_mask.clone()
    bad[0, -1] = True
    with pytest.raises(ValueError):
        training_loss(tiny_gpt2(), "unstunted", ids, attn, bad, StuntConfig())


# --------------------------------------------------------------------------- v4: sampled amplification


@torch.no_grad()
def exact_depth2(model, ids, rows, ts) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact targets of `sampled_scores` at depth 2, by enumerating every first token:
    q_D(x) ∝ p(x)^2 sum_c p(c|x)^2 and q_1(x) ∝ p(x)^2; returns (q_D, q_1), each [N, V]."""
    q_d, q_1 = [], []
    for r, t in zip(rows.tolist(), ts.tolist()):
        seqs = torch.cat([ids[r, :t + 1].expand(VOCAB, -1), torch.arange(VOCAB)[:, None]], 1)
        logp = torch.log_softmax(model(seqs).logits.double(), -1)
        p, collision = logp[0, t].exp(), logp[:, t + 1].exp().pow(2).sum(-1)
        q_d.append(p ** 2 * collision / (p ** 2 * collision).sum())
        q_1.append(p ** 2 / (p ** 2).sum())
    return torch.stack(q_d), torch.stack(q_1)


def exact_movement(model, ids, rows, ts) -> torch.Tensor:
    """m = (q_D - q_1)(y) - sum_x (q_D - q_1)(x) p(x) per position, with the exact q."""
    q_d, q_1 = exact_depth2(model, ids, rows, ts)
    with torch.no_grad():
        p = torch.softmax(model(ids).logits.double(), -1)[rows, ts]
    shift, y = q_d - q_1, ids[rows, ts + 1]
    return shift.gather(1, y[:, None])[:, 0] - (shift * p).sum(-1)


def test_particles_are_drawn_and_weighted_on_the_kv_cache_as_a_full_recomputation_would():
    model = tiny_gpt2().eval()
    ids, attn, _ = batch()
    positions = [(0, 2), (0, 5), (1, 4), (2, 6)]
    amp = sampled_scores(model, ids, attn, positions, 5, 3, generator=torch.Generator().manual_seed(0))
    assert amp["sample_tokens"].shape == (4, 5, 2)  # x and one drawn token; the third is summed out
    for i, (r, t) in enumerate(positions):
        for k in range(5):
            x, c = amp["sample_tokens"][i, k].tolist()
            seq = torch.cat([ids[r, :t + 1], torch.tensor([x, c])])[None]
            logp = torch.log_softmax(model(seq).logits[0].double(), -1)
            expected = logp[t, x] + logp[t + 1, c] + torch.logsumexp(2 * logp[t + 2], -1)
            assert abs(amp["sample_logweights"][i, k].item() - expected.item()) < 1e-4
    assert torch.equal(amp["first_tokens"], amp["sample_tokens"][..., 0])


def test_sampled_q_converges_to_the_probability_squared_sequence_distribution():
    model = tiny_gpt2().eval()
    ids, attn, _ = batch()
    rows, ts = torch.tensor([0, 1, 2]), torch.tensor([3, 2, 5])
    amp = sampled_scores(model, ids, attn, torch.stack([rows, ts], 1), 1000, 2,
                         generator=torch.Generator().manual_seed(1))
    q_d, q_1 = exact_depth2(model, ids, rows, ts)
    sampled_d = torch.zeros(3, VOCAB, dtype=torch.float64).scatter_add_(1, amp["first_tokens"], amp["sample_weights"].double())
    sampled_1 = torch.zeros(3, VOCAB, dtype=torch.float64).scatter_add_(1, amp["first_tokens"], amp["first_weights"].double())
    shift = q_d - q_1
    assert shift.abs().max() > 1e-3  # depth 2 moves mass here, so the contrast's check has teeth
    assert (sampled_d - q_d).abs().max() < 0.01
    assert ((sampled_d - sampled_1) - shift).abs().max() < 0.2 * shift.abs().max()


def test_sampled_stunting_zeros_the_movement_toward_its_q_and_shrinks_it_toward_the_exact_q():
    """v4's defining property. For every draw the weights cancel the batch's first-order
    movement toward the sampled q̂ (so its expectation over draws is 0 too); against the
    exact q (by enumeration) the movement that remains, averaged over 100 draws, is a small
    fraction of the unstunted update's, which is far from 0 (the stunting is no no-op)."""
    model = tiny_gpt2().eval()
    ids, attn, loss_mask = batch()
    cfg = StuntConfig(depth=2, particles=64, positions="all")
    rows, ts = loss_mask[:, :-1].nonzero(as_tuple=True)
    m = exact_movement(model, ids, rows, ts)
    plain, _ = training_loss(model, "unstunted", ids, attn, loss_mask, cfg)
    remaining = []
    for seed in range(100):
        torch.manual_seed(seed)
        amp = sampled_scores(model, ids, attn, torch.stack([rows, ts], 1), cfg.particles, cfg.depth)
        weights, stats = stunt_weights("stunted-sampled", loss_mask, amp, cfg)
        w = weights[rows, ts]
        assert stats["balance_shrink"] == 1.0 and abs((w * lookahead_movement(amp)).sum().item()) < 1e-9
        remaining.append((w * m).sum().item())
    remaining = torch.tensor(remaining)
    assert abs(m.sum().item()) > 0.005  # the unstunted update moves toward q
    assert abs(remaining.mean().item()) < 0.25 * abs(m.sum().item())
    torch.manual_seed(0)
    stunted, stats = training_loss(model, "stunted-sampled", ids, attn, loss_mask, cfg)
    assert abs(stunted.item() - plain.item()) > 1e-3 and stats["balance_residual"] < 1e-9


def test_sampled_stunting_is_deterministic_for_a_seed():
    model = tiny_gpt2()
    ids, attn, loss_mask = batch()
    cfg = StuntConfig(depth=3, particles=8)

    def loss_bits(seed: int) -> bytes:
        torch.manual_seed(seed)
        loss, _ = training_loss(model, "stunted-sampled", ids, attn, loss_mask, cfg)
        return loss.detach().numpy().tobytes()

    assert loss_bits(3) == loss_bits(3) and loss_bits(3) != loss_bits(4)


# --------------------------------------------------------------------------- v5: a learned amplifier


def test_learned_stunting_cancels_the_first_order_update_toward_the_amplifier():
    """v5's defining property, checked by autograd rather than by the formula the code uses:
    under the weights, one gradient step on the weighted CE changes sum_t KL(q_A,t || p_t)
    by 0 to first order (the update's direction is orthogonal to the gradient of that KL),
    where the unstunted step moves it. The toy of `validate`: the amplifier
    has learned that A (whose continuation is certain) is the truth, and the batch is text of
    the toy language, where it is not always."""
    from benchmark.validate import toy_lookahead_model

    model, always_a = toy_lookahead_model()
    cfg = StuntConfig(width=4, depth=2, positions="all")
    amplifier = new_amplifier("stunted-learned", cfg, seed=0)
    amplifier.amplify(amplified_scores(model, always_a, None, [(r, 0) for r in range(len(always_a))], 4, 2))
    amplifier.retrain(0)
    g = torch.Generator().manual_seed(0)
    firsts = torch.tensor([2, 4, 5, 6])[torch.randint(4, (24,), generator=g)]
    seconds = torch.where(firsts == 2, 3, torch.randint(8, 24, (24,), generator=g))
    ids = torch.stack([torch.ones(24, dtype=torch.long), firsts, seconds], 1)
    attn, loss_mask = torch.ones_like(ids), torch.ones_like(ids, dtype=torch.bool)
    loss_mask[:, -1] = False
    rows, ts = loss_mask[:, :-1].nonzero(as_tuple=True)
    amp = amplifier.amplify(amplified_scores(model, ids, attn, torch.stack([rows, ts], 1), 4, 2))
    weights, stats = stunt_weights("stunted-learned", loss_mask, amp, cfg)
    assert stats["balance_shrink"] == 1.0

    with torch.no_grad():
        z0 = model(ids, attention_mask=attn).logits[rows, ts].double()
    p = torch.softmax(z0, -1)
    q = p.clone().scatter_(1, amp["top_tokens"], amp["amplifier_q"].double())  # q_A: p off the candidates
    assert torch.allclose(q.sum(-1), torch.ones(len(q), dtype=torch.float64)) and (q - p).abs().max() > 1e-3

    def first_order_change(w: torch.Tensor) -> float:
        z = z0.clone().requires_grad_(True)
        ce = torch.nn.functional.cross_entropy(z, ids[rows, ts + 1], reduction="none")
        (grad_loss,) = torch.autograd.grad((w * ce).sum(), z)
        z = z0.clone().requires_grad_(True)
        kl = (q * (q.log() - torch.log_softmax(z, -1))).sum()
        (grad_kl,) = torch.autograd.grad(kl, z)
        return -(grad_kl * grad_loss).sum().item()  # d KL / d eta along the descent step

    plain = first_order_change(torch.ones(len(rows), dtype=torch.float64))
    stunted = first_order_change(weights[rows, ts])
    assert abs(plain) > 0.1  # unstunted training moves the model (here away from q_A: A is a quarter)
    assert abs(stunted) < 1e-6 * abs(plain)  # float32 logits: zero to their precision


def test_the_amplifier_retrains_at_least_ten_times_a_run():
    cfg = StuntConfig()
    assert [new_amplifier("stunted-learned", cfg, 0, steps).every for steps in (None, 1500, 625, 125, 31, 5)] == \
        [50, 50, 50, 12, 3, 1]
    assert new_amplifier("stunted-balance", cfg, 0, 125) is None


def test_learned_stunting_is_plain_training_until_the_amplifier_has_learned():
    """Before its first retrain the amplifier is q_A = p, so the first K steps of v5 are
    exactly unstunted ones."""
    model = tiny_gpt2().eval()
    ids, attn, loss_mask = batch()
    cfg = StuntConfig(width=4, depth=2, positions="all")
    plain, _ = training_loss(model, "unstunted", ids, attn, loss_mask, cfg)
    loss, stats = training_loss(model, "stunted-learned", ids, attn, loss_mask, cfg,
                                amplifier=new_amplifier("stunted-learned", cfg, seed=0))
    assert abs(loss.item() - plain.item()) < 1e-6 and stats["amplifier_gain"] == 0.0


# --------------------------------------------------------------------------- the existing variants stay put

# Tiny models trained on main before stunted-learned existed (torch 2.13.0+cpu, one thread):
# adding v5 must leave every existing variant's trained bytes as they were. The bytes depend on
# the kernels torch picks for the CPU (CI once ran on an AVX2-only machine: another digest, the
# same training), so the digests are recorded per `torch.backends.cpu.get_cpu_capability()`
# (AVX2 and DEFAULT read here with ATEN_CPU_CAPABILITY); on every machine the weights' norm and
# the last logged loss must also match, to within what those three kernels differ by (norm:
# 5e-9 relative; loss: 9e-5).
TINY = dict(tasks=("rhymes",), size="quick", steps=12, batch_size=8, n_layer=1, n_embd=16, n_head=2,
            n_positions=64, warmup=2)
MAIN_DIGESTS = {
    "AVX512": {"unstunted": "61b00b5e108cf366c2ba", "stunted-balance": "1537ea93d18a14168909",
               "stunted-sampled": "fcdee89219f9a2b879fe"},
    "AVX2": {"unstunted": "cfa2c339e7098c8e2bc5", "stunted-balance": "8a60a60f718f840fc1b3",
             "stunted-sampled": "d47f07b068bed01dd410"},
    "DEFAULT": {"unstunted": "e798d273ace718bd21b4", "stunted-balance": "18a7990a7bab58069864",
                "stunted-sampled": "4b8893815c3e055e559d"},
}
MAIN_NORM_AND_LOSS = {"unstunted": (7.3876557, 5.36367), "stunted-balance": (7.3840726, 5.37961),
                      "stunted-sampled": (7.3745902, 5.37960)}


def test_existing_variants_train_to_the_same_bytes_and_keys_as_before_v5(tmp_path):
    import json
    from safetensors.torch import load_file
    from benchmark.baselines import reference_config
    from benchmark.results import model_hash
    from benchmark.train import TrainConfig, train_reference

    # The cache keys: a default StuntConfig field never enters TrainConfig.to_dict().
    assert reference_config("full", "rhymes", "stunted-balance", 1).to_dict() == {
        "variant": "stunted-balance", "seed": 1, "tasks": ["rhymes"], "size": "full", "n_layer": 4, "n_embd": 128,
        "n_head": 4, "n_positions": 128, "steps": None, "batch_size": 16, "lr": 0.003, "warmup": 100,
        "weight_decay": 0.01, "stunt": {}}
    exact = torch.__version__ == "2.13.0+cpu" and not torch.cuda.is_available()
    digests = MAIN_DIGESTS.get(torch.backends.cpu.get_cpu_capability(), {}) if exact else {}
    for variant, (norm, loss) in MAIN_NORM_AND_LOSS.items():
        out = train_reference(TrainConfig(variant=variant, **TINY), tmp_path / variant)
        weights = load_file(out / "model.safetensors")
        got_norm = sum(float(t.double().pow(2).sum()) for t in weights.values()) ** 0.5
        got_loss = json.loads((out / "train_log.json").read_text())["log"][-1]["loss"]
        assert got_norm == pytest.approx(norm, rel=1e-6) and got_loss == pytest.approx(loss, abs=5e-4), variant
        if variant in digests:
            assert model_hash(out) == digests[variant], variant


def test_learned_variant_trains_deterministically_and_logs_the_amplifier_gain(tmp_path):
    import json

    from benchmark.results import model_hash
    from benchmark.train import TrainConfig, train_reference

    cfg = TrainConfig(variant="stunted-learned", **TINY | {"steps": 40})
    a, b = (train_reference(cfg, tmp_path / name) for name in ("a", "b"))
    assert model_hash(a) == model_hash(b)
    log = json.loads((a / "train_log.json").read_text())
    # A 40-step run retrains every 4 steps (K = 50 would leave it unstunted throughout).
    assert [entry["step"] for entry in log["amplifier"]] == list(range(3, 40, 4))
    assert log["final_amplifier_gain"] == log["amplifier"][-1]["heldout_gain"]
    assert all(entry["positions"] > 0 for entry in log["amplifier"])
    # What a reference's result cells carry (`Reference.training`), for the leaderboard.
    from benchmark.runner import _training_diagnostics

    assert _training_diagnostics(a) == {"final_amplifier_gain": log["final_amplifier_gain"],
                                        "min_balance_ess": log["min_balance_ess"],
                                        "max_balance_residual": log["max_balance_residual"]}
