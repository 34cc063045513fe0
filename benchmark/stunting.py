"""The training losses of the reference baselines: ordinary, myopic and four stunted variants.

The training loop enters ``prepared(model, variant, cfg)`` once per run (a context manager:
the myopic attention is installed inside it and removed on the way out, so a saved model is
an ordinary one) and calls, per step,
``training_loss(model, variant, input_ids, attention_mask, loss_mask, cfg, decision_mask)``
which returns the scalar loss to backpropagate and a dict of floats to log.

Conventions. ``loss_mask[b, t]`` is True where the prediction MADE AT position t (of token
t+1) counts, so the last column is always False. Position ids skip left padding, as in
`benchmark.amplify`, so the trained p and the amplified q are computed alike.

What "amplification" means here. A depth-1 beam search of width W is p renormalised over its
top W tokens (q_1): it "helps" wherever the true token is in the top W, which is truncation
of an underconfident model, not lookahead. Every stunted rule therefore uses the contrast of
the depth-D distribution q_D with q_1 (`benchmark.amplify.lookahead_shift`), so each rule is
exactly the plain loss for a search of depth 1:

- ``unstunted``: mean next-token cross-entropy over ``loss_mask``.
- ``myopic`` (Wu, Morris & Levine 2024): the same loss, but attention lets the loss at t
  send gradient into earlier positions only with strength ``beta`` (0 = fully myopic):
  for query i the keys and values of positions j < i are computed from detached states, so
  the projections still learn from them but nothing at j is trained for i's sake; the
  diagonal keeps its gradient. The forward pass is unchanged. See `myopic_attention`.
- ``stunted-skip`` (v1): drop the loss of every amplified token where deeper search gives the
  true token more probability than truncation does, q_D(y) > q_1(y).
- ``stunted-penalty`` (v2): CE + mu * mean_t sum_{x != y} max(q_D(x) - q_1(x), 0) p_theta(x):
  the probability the model gives to the tokens that deeper search promotes beyond
  truncation, other than the truth. Bounded in [0, 1], see `amplification_penalty`.
- ``stunted-balance`` (v3): per-token weights, as close to 1 as possible, under which the
  batch's first-order movement toward q_D beyond q_1 is zero in magnitude and, where that
  leaves at least half the tokens' worth of effective sample, in count; see
  `balance_weights` for which constraint gives way first.
- ``stunted-sampled`` (v4): v3's balance against the sampled amplified distribution q̂ of
  `benchmark.amplify.sampled_scores` (M particles of depth D drawn from the model, weighted
  by their probability) instead of the beams' q. For every draw the weights cancel the
  batch's first-order movement toward q̂_D beyond q̂_1, so its expectation over the draws
  is 0 too; docs/design.md says what that leaves toward the exact q.
- ``stunted-learned`` (v5): v3's balance against the distribution q_A of a learned lookahead
  amplifier (`benchmark.amplifier`), which re-weights p's top W tokens by what the beams of
  v3 saw about each and is retrained every ``amplifier_every`` steps to predict the next
  token better than the model. The movement is toward q_A beyond p (q_A = p for a depth-1
  search and before the first retrain), so the weights cancel the batch's first-order
  movement toward whatever the amplifier has learned to add.

q comes from `benchmark.amplify.amplified_scores` (v4: `sampled_scores`, drawing from torch's
global generator, which training seeds, so a run stays bit-deterministic) on the current weights, in eval mode
(dropout off) without gradient, before each update. Where it is computed is set by
``StuntConfig.positions``; every loss position carries its ordinary CE with weight 1 unless
the variant's rule changes it, so the variants train on the same positions:

- "all": at every loss position.
- "sample" (default): at a random fraction ``sample_frac`` of the loss positions (an unbiased
  subsample of "all", at a fraction of the cost). Skip drops only amplified tokens;
  balance cancels the movement of the amplified tokens and the expected movement of the
  others (estimated by the amplified tokens' mean, since they are a random sample).
- "decisions": at the positions of ``decision_mask`` (targeted stunting).

Every loss is a sum of weighted per-token CE divided by the number of loss positions, so a
skipped token removes its update and leaves the others at the unstunted scale.

Cost (bench/bench_train_step.py, 4 layers × 128, vocab 2,000, batch 32 × 64, W=4, D=2, one
thread, as a multiple of the unstunted step): myopic 0.9–1.05x; stunted with "sample" at
0.5 (the default) 2.1–2.2x, at 0.25 1.7x; with "all" 3.0–3.3x; with "decisions" 1.6x.
The amplification costs one no-grad forward plus one over W·(D-1) beam tokens per
amplified position, which is why "all" sits at about 3x. stunted-sampled feeds M·(D-1)
particle tokens instead: at M=16 (the default) 5.0x unstunted and 2.3x stunted-balance, at
M=64 17.5x (one run, side by side). stunted-learned reuses v3's beams and adds the
amplifier's features, its forward and its retrain every K steps (50 full-batch Adam steps on
at most 8,192 positions): at K=50 (the default) 2.1-2.2x unstunted, 0.98-1.03x
stunted-balance; at K=10 2.2-2.3x (two runs, side by side, on a loaded machine: v3
2.1-2.2x, v4 5.8-6.2x in the same runs).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from benchmark.amplify import (DEFAULT_DEPTH, DEFAULT_PARTICLES, DEFAULT_WIDTH, amplified_scores,
                               gain_per_position, lookahead_movement, lookahead_shift, lookahead_support,
                               position_ids_from_mask, sampled_scores)
from benchmark.amplifier import DEFAULT_EVERY, DEFAULT_HIDDEN, LearnedAmplifier
from benchmark.variants import MASKED, VARIANTS

MYOPIC = "myopic"  # the attention implementation's registered name
MIN_RETRAINS = 10  # stunted-learned: retrains in a run at the least (`new_amplifier`)


@dataclass
class StuntConfig:
    """Settings of the myopic and stunted losses (unused fields are ignored by a variant)."""

    width: int = DEFAULT_WIDTH  # beam width W of the amplification (the evaluation's too)
    depth: int = DEFAULT_DEPTH  # beam depth D (the evaluation's too), and the particles' depth
    particles: int = DEFAULT_PARTICLES  # stunted-sampled: continuations M drawn per amplified position
    positions: str = "sample"  # where to amplify: "all" | "sample" | "decisions"
    sample_frac: float = 0.5  # share of loss positions amplified with positions="sample"
    beta: float = 0.0  # myopic: gradient scale through earlier positions (1 = ordinary)
    penalty_weight: float = 1.0  # mu of stunted-penalty
    min_ess: float = 0.5  # stunted-balance: effective sample size kept, as a share of tokens
    amplifier_every: int = DEFAULT_EVERY  # stunted-learned: steps K between the amplifier's retrains
    amplifier_hidden: int = DEFAULT_HIDDEN  # stunted-learned: the amplifier's hidden units


# --------------------------------------------------------------------------- myopic attention


def _from_detached_states(module: torch.nn.Module, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values of ``module`` (a GPT-2 attention) recomputed from its input states
    with their gradient cut: the projection weights still learn from them, the states (and
    whatever computed them, at their own positions) do not."""
    states = module.myopic_states.detach()
    _, key, value = module.c_attn(states).split(module.split_size, dim=2)
    heads = (*states.shape[:-1], -1, module.head_dim)
    return key.view(heads).transpose(1, 2).reshape(shape), value.view(heads).transpose(1, 2).reshape(shape)


def myopic_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # [B, H, q, d]
    key: torch.Tensor,  # [B, H_kv, k, d]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention in which a position's loss trains nothing computed at earlier positions.

    Query i attends to keys j <= i. For j < i the score and the output use k_j and v_j as
    computed from the *detached* input state h_j (Wu, Morris & Levine 2024's myopic descent,
    as their code does it): the key and value projections still learn from every position
    that reads them, but no gradient reaches h_j, so position j is never trained to compute
    something for a later one. ``module.myopic_beta`` passes that share of the gradient into
    h_j as well (1: ordinary attention). For j = i the gradient is whole. The forward value
    equals ordinary attention. A transformers attention-interface function, for GPT-2
    attention (`prepared` records its input states).
    """
    beta = float(getattr(module, "myopic_beta", 0.0))
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    q_len, kv_len = query.shape[-2], key.shape[-2]
    offset = kv_len - q_len  # query i is key i + offset (a cache puts earlier keys first)
    if torch.is_grad_enabled():
        if offset or getattr(module, "myopic_states", None) is None:
            raise ValueError("myopic training runs a GPT-2 on whole sequences (no cache; `prepared` records the states)")
        # Equal to key and value in value (the same projection of the same numbers); in
        # gradient the weights get all of it and the earlier states beta of it.
        key_sg, value_sg = _from_detached_states(module, key.shape)
        key_mix, value_mix = key_sg + beta * (key - key_sg), value_sg + beta * (value - value_sg)
    else:  # no gradient (the training monitor measuring, a cache): ordinary attention
        key_mix, value_mix = key, value
    scores = torch.matmul(query, key_mix.transpose(-1, -2)) * scaling
    # Give the diagonal its missing (1 - beta) share of gradient: the added term is exactly 0.
    own = (query * (key[..., offset:, :] - key_mix[..., offset:, :])).sum(-1) * scaling
    scores.diagonal(offset, -2, -1).add_(own)

    if attention_mask is None:
        causal = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(offset)
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    elif attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    else:
        scores = scores + attention_mask[..., :kv_len]
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    probs = F.dropout(probs, p=dropout, training=module.training)

    out = torch.matmul(probs, value_mix)
    own_p = probs.diagonal(offset, -2, -1)[..., None]
    out = out + own_p * (value[..., offset:, :] - value_mix[..., offset:, :])  # exactly 0 in value
    return out.transpose(1, 2).contiguous(), probs


def register_myopic_attention() -> None:
    """Register `myopic_attention` (and a float causal mask for it) with transformers."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(MYOPIC, myopic_attention)
    # Without a registered mask function transformers would pass no mask at all (no padding).
    AttentionMaskInterface.register(MYOPIC, eager_mask)


@contextmanager
def prepared(model: torch.nn.Module, variant: str, cfg: StuntConfig) -> Iterator[torch.nn.Module]:
    """The model set up for ``variant`` inside the block (only myopic changes anything: its
    attention); on the way out, even on an error, it is an ordinary model again (standard
    attention, no ``myopic_beta`` attributes), ready to save."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant != "myopic":
        yield model
        return
    register_myopic_attention()
    before = model.config._attn_implementation
    hooks = []
    for module in model.modules():  # plain attributes: never saved with the weights
        module.myopic_beta = float(cfg.beta)
        if hasattr(module, "c_attn"):  # a GPT-2 attention: record its input states
            hooks.append(module.register_forward_pre_hook(_record_states, with_kwargs=True))
    model.set_attn_implementation(MYOPIC)
    try:
        yield model
    finally:
        model.set_attn_implementation(before if before != MYOPIC else "sdpa")
        for hook in hooks:
            hook.remove()
        for module in model.modules():
            module.__dict__.pop("myopic_beta", None)
            module.__dict__.pop("myopic_states", None)


def _record_states(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: keep the attention's input states for `myopic_attention`."""
    module.myopic_states = args[0] if args else kwargs["hidden_states"]


# --------------------------------------------------------------------------- per-token weights


def amplified_positions(
    loss_mask: torch.Tensor, cfg: StuntConfig, decision_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Bool [B, T]: where to compute the amplified distribution this step."""
    if cfg.positions == "all":
        return loss_mask.clone()
    if cfg.positions == "sample":
        chosen = loss_mask & (torch.rand(loss_mask.shape, device=loss_mask.device) < cfg.sample_frac)
        if not chosen.any() and loss_mask.any():  # never an empty sample
            flat = loss_mask.flatten().nonzero()[:, 0]
            chosen.view(-1)[flat[torch.randint(len(flat), (1,))]] = True
        return chosen
    if cfg.positions == "decisions":
        if decision_mask is None:
            raise ValueError('positions="decisions" needs a decision_mask')
        return loss_mask & decision_mask.bool()
    raise ValueError(f"unknown positions {cfg.positions!r} (all | sample | decisions)")


def balance_weights(movement: torch.Tensor, others: int = 0, min_ess: float = 0.5) -> tuple[torch.Tensor, dict]:
    """Weights w >= 0 (mean 1) for tokens with first-order movements m toward the amplified
    prediction, as close to 1 as possible (least squares), such that

        magnitude:  sum_t w_t m_t + others * mean(m) = 0
        count:      sum_t w_t sign(m_t) + others * mean(sign m) = 0

    ``others`` counts further tokens of the batch whose movement was not computed (weight 1,
    a random sample like these, so their expected movement is the mean here). Closest-to-1
    weights, not an exponential tilt: a tilt puts a group's whole weight on its most extreme
    token (it collapsed batches onto one or two tokens, effective sample 4-8%).

    Which constraint gives way: magnitude is the first-order update itself, so it is kept
    first. Both are solved together when that leaves an effective sample size
    (sum w)^2 / sum w^2 of at least ``min_ess`` of the tokens; otherwise count is dropped;
    if magnitude alone still needs more, the weights move toward balance only as far as
    ``min_ess`` allows and the remaining imbalance is reported. Nonnegativity is kept by
    fixing negative weights at 0 and solving again (an active-set loop).

    Returns float64 weights and {"ess", "residual" (|sum w m| / sum w |m| over the batch),
    "count_balanced" (1/0), "shrink" (1 = fully balanced)}.
    """
    m = movement.double()
    n = m.numel()
    ones = torch.ones_like(m)
    if n == 0 or m.abs().max() < 1e-12:  # nothing moves (e.g. a depth-1 search): nothing to balance
        return ones, {"ess": 1.0, "residual": 0.0, "count_balanced": 1.0, "shrink": 1.0}
    sign = torch.sign(m)
    targets = {"magnitude": -others * m.mean(), "count": -others * sign.mean()}

    def solve(rows: list[torch.Tensor], rhs: list[torch.Tensor]) -> torch.Tensor | None:
        free = torch.ones(n, dtype=torch.bool)
        for _ in range(50):
            A = torch.stack([ones[free]] + [r[free] for r in rows])  # [k+1, n_free]
            b = torch.stack([torch.tensor(float(n), dtype=torch.float64)] + rhs)
            # min |w - 1|^2 on the free tokens subject to A w = b: w = 1 + A^T (A A^T)^+ (b - A 1).
            lam = torch.linalg.lstsq(A @ A.T, (b - A @ ones[free])[:, None]).solution[:, 0]
            w_free = 1 + A.T @ lam
            if (A @ w_free - b).abs().max() > 1e-6 * max(1.0, float(n)):
                return None  # infeasible: no nonnegative weights satisfy the constraints
            if (w_free >= 0).all():
                w = torch.zeros_like(m)
                w[free] = w_free
                return w
            idx = free.nonzero()[:, 0]
            free[idx[w_free < 0]] = False
            if free.sum() <= len(rows):
                return None
        return None

    def ess(w: torch.Tensor) -> float:
        return float(w.sum() ** 2 / (w.pow(2).sum() * n)) if w.pow(2).sum() > 0 else 0.0

    count_balanced = 1.0
    w = solve([m, sign], [targets["magnitude"], targets["count"]])
    if w is None or ess(w) < min_ess:
        count_balanced = 0.0
        w = solve([m], [targets["magnitude"]])
    shrink = 1.0
    if w is None:  # every movement has the same sign: nothing can cancel it
        w, shrink = ones.clone(), 0.0
    elif ess(w) < min_ess:
        lo, hi = 0.0, 1.0  # ESS falls as the weights move from 1 toward w: bisect the step
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ess(1 + mid * (w - 1)) >= min_ess else (lo, mid)
        shrink, w = lo, 1 + lo * (w - 1)
    total_abs = float((w * m.abs()).sum() + others * m.abs().mean())
    residual = abs(float((w * m).sum() + others * m.mean())) / max(total_abs, 1e-300)
    return w, {"ess": ess(w), "residual": residual, "count_balanced": count_balanced, "shrink": shrink}


def amplification_penalty(logits: torch.Tensor, amp: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per amplified position: sum over the top W tokens x != y of max(q_D(x) - q_1(x), 0) p_theta(x).

    The model's probability on what deeper search promotes beyond truncation, other than the
    truth; 0 for a search of depth 1. Each term is a product of probabilities and the positive
    shifts sum to at most 1, so the penalty lies in [0, 1] and its gradient vanishes as
    p_theta(x) -> 0: unlike a -KL(q || p) "push away" term, which grows without bound as
    p_theta(x) -> 0, it cannot run away, and it never pushes down the true token, so it does
    not fight the CE term.
    """
    logp_top = logits.gather(-1, amp["top_tokens"]) - logits.logsumexp(-1, keepdim=True)
    push = lookahead_shift(amp).clamp(min=0) * (amp["top_tokens"] != amp["targets"][:, None])
    return (push.to(logp_top.dtype) * logp_top.exp()).sum(-1)


def stunt_weights(
    variant: str, loss_mask: torch.Tensor, amp: dict, cfg: StuntConfig, logp_top: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Per-position loss weights [B, T-1] of skip and balance: 1 at every loss position, the
    variant's rule at the amplified ones. ``amp`` is the `amplified_scores` output there."""
    weights = loss_mask[:, :-1].double()
    helps = amp["q_true"] > amp["q1_true"]  # deeper search beats truncation on the truth
    stats = {"frac_helps": helps.double().mean().item() if len(helps) else 0.0}
    if variant == "stunted-skip":
        w = (~helps).double()
        stats["frac_dropped"] = 1.0 - w.mean().item() if len(w) else 0.0
    elif variant in ("stunted-balance", "stunted-sampled", "stunted-learned"):  # v4, v5: v3's rule on q̂, q_A
        movement = lookahead_movement(amp, logp_top)
        # With "sample" the other loss tokens are a random sample like these, so their
        # expected movement is counted; with "decisions" they are not (and not balanced).
        others = int(weights.sum().item()) - len(movement) if cfg.positions == "sample" else 0
        w, info = balance_weights(movement, others, cfg.min_ess)
        stats.update({f"balance_{k}": v for k, v in info.items()})
        stats["movement_mean"] = movement.mean().item()
        stats["movement_abs_mean"] = movement.abs().mean().item()
    else:
        raise ValueError(f"stunt_weights is for stunted-skip, -balance, -sampled and -learned, not {variant!r}")
    weights[amp["rows"], amp["ts"]] = w
    return weights, stats


# --------------------------------------------------------------------------- the loss


def new_amplifier(variant: str, cfg: StuntConfig, seed: int, steps: int | None = None) -> LearnedAmplifier | None:
    """The learned amplifier a run of ``variant`` trains beside the model (stunted-learned
    only; None otherwise), seeded by the run's seed. It retrains every
    ``cfg.amplifier_every`` steps, or often enough for ``MIN_RETRAINS`` in a run of ``steps``:
    a short run (chess, 125 steps) would otherwise train against q_A = p until step 50."""
    if variant != "stunted-learned":
        return None
    every = cfg.amplifier_every if steps is None else max(1, min(cfg.amplifier_every, steps // MIN_RETRAINS))
    return LearnedAmplifier(every=every, hidden=cfg.amplifier_hidden, seed=seed)


def training_loss(
    model: torch.nn.Module,
    variant: str,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    cfg: StuntConfig,
    decision_mask: torch.Tensor | None = None,
    amplifier: LearnedAmplifier | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The scalar loss of one step for `variant`, and floats to log.

    Stats: ce (plain mean CE over loss_mask, comparable across variants), and for stunted
    variants frac_amplified, frac_helps (q_D(y) > q_1(y)), amp_gain and amp_gain_depth1
    (mean log p_0.5 - log p at the amplified positions, for q_D and q_1), plus frac_dropped
    (skip), penalty (penalty), balance_ess / balance_residual / movement_* (balance, sampled
    and learned), amplifier_gain (learned: mean log q_A(y) - log p(y), held out).

    stunted-learned needs ``amplifier`` (`new_amplifier`): it scores this step's positions
    and keeps them for its next retrain, which the training loop calls (`LearnedAmplifier.due`).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant == MASKED:
        raise ValueError("the masked variant has its own objective (benchmark.masked.MaskedObjective)")
    if variant == "stunted-learned" and amplifier is None:
        raise ValueError("stunted-learned trains against a learned amplifier: pass one (`new_amplifier`)")
    loss_mask = loss_mask.bool()
    if loss_mask[:, -1].any():
        raise ValueError("loss_mask[b, t] marks the prediction made at t of token t+1: the last column must be False")
    if variant == "myopic" and model.config._attn_implementation != MYOPIC:
        raise ValueError("train the myopic variant inside `prepared(model, 'myopic', cfg)`")

    amp = None
    if variant.startswith("stunted"):
        where = amplified_positions(loss_mask, cfg, decision_mask)
        rows, ts = where.nonzero(as_tuple=True)
        if len(rows) and variant == "stunted-sampled":
            amp = sampled_scores(model, input_ids, attention_mask, torch.stack([rows, ts], 1), cfg.particles, cfg.depth)
        elif len(rows):
            amp = amplified_scores(model, input_ids, attention_mask, torch.stack([rows, ts], 1), cfg.width, cfg.depth)

    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids_from_mask(attention_mask)).logits
    B, T, V = logits.shape
    targets = input_ids[:, 1:].reshape(-1)
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), targets, reduction="none").view(B, T - 1)
    mask = loss_mask[:, :-1]
    n_loss = max(int(mask.sum()), 1)
    plain = (ce * mask).sum() / n_loss
    stats = {"ce": plain.item()}
    if variant in ("unstunted", "myopic"):
        return plain, stats

    stats["frac_amplified"] = (len(amp["rows"]) if amp else 0) / n_loss
    if amp is None:  # nothing to amplify (no loss positions, or no decision point here)
        return plain, stats
    stats["amp_gain"] = gain_per_position(amp["logp_true"], amp["q_true"], 0.5).mean().item()
    stats["amp_gain_depth1"] = gain_per_position(amp["logp_true"], amp["q1_true"], 0.5).mean().item()
    if variant == "stunted-learned":  # q_A from the beams above; the movement is toward q_A beyond p
        amp = amplifier.amplify(amp)
        stats["amplifier_gain"] = amp["amplifier_gain"].mean().item()

    amp_logits = logits[amp["rows"], amp["ts"]].float()
    if variant == "stunted-penalty":
        penalty = amplification_penalty(amp_logits, amp).mean()
        stats["penalty"] = penalty.item()
        stats["frac_helps"] = (amp["q_true"] > amp["q1_true"]).double().mean().item()
        return plain + cfg.penalty_weight * penalty, stats

    # The movement uses p of this very forward pass (the one the step trains), detached.
    support = lookahead_support(amp)[0]
    logp_top = (amp_logits.gather(-1, support) - amp_logits.logsumexp(-1, keepdim=True)).detach()
    weights, more = stunt_weights(variant, loss_mask, amp, cfg, logp_top)
    stats.update(more)
    # Divided by the number of loss positions, not by the weights' sum: a skipped token
    # removes its own update and leaves every other token's at the unstunted scale.
    return (weights.to(ce.dtype) * ce).sum() / n_loss, stats
