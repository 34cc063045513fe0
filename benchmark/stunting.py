"""The training losses of the reference baselines: ordinary, myopic and three stunted variants.

The training loop calls, once per run, ``prepare_model(model, variant, cfg)`` and, per step,
``training_loss(model, variant, input_ids, attention_mask, loss_mask, cfg, decision_mask)``
which returns the scalar loss to backpropagate and a dict of floats to log.

Conventions. ``loss_mask[b, t]`` is True where the prediction MADE AT position t (of token
t+1) counts, so the last column is always False. Position ids skip left padding, as in
`benchmark.amplify`, so the trained p and the amplified q are computed alike.

Variants:

- ``unstunted``: mean next-token cross-entropy over ``loss_mask``.
- ``myopic`` (Wu, Morris & Levine 2024): the same loss, but attention lets the loss at t
  send gradient into earlier positions only with strength ``beta`` (0 = fully myopic):
  keys and values of positions j < i are detached for query i, the diagonal keeps its
  gradient. The forward pass is unchanged. See `myopic_attention`.
- ``stunted-skip`` (v1): drop the loss of every token where the amplified distribution q
  gives the true token more probability than p does ("amplification helps").
- ``stunted-penalty`` (v2): CE + mu * mean_t sum_{x != x_true} q_t(x) p_theta(x | prefix):
  the probability the model gives to the amplified prediction's tokens other than the
  truth, weighted by q. Bounded in [0, 1], see `amplification_penalty`.
- ``stunted-balance`` (v3): per-token weights that make the tokens where amplification helps
  and the others carry equal total weight and equal total update magnitude, see
  `balance_weights`.

q comes from `benchmark.amplify.amplified_scores` on the current weights, in eval mode
(dropout off) without gradient, before each update. Where it is computed is set by
``StuntConfig.positions``:

- "all": at every loss position; the stunted loss covers them all.
- "sample" (default): at a random fraction ``sample_frac`` of the loss positions; the
  skip and balance losses are then computed over the sampled positions only (an unbiased
  subsample of the "all" objective, at a fraction of the cost); the penalty variant keeps
  CE over every loss position and averages the penalty over the sampled ones.
- "decisions": at the positions of ``decision_mask`` (targeted stunting); every other loss
  position keeps its ordinary CE with weight 1.

Cost (bench/bench_train_step.py, 4 layers × 128, vocab 2,000, batch 32 × 64, W=4, D=2, one
thread, as a multiple of the unstunted step): myopic 0.9–1.05x; stunted with "sample" at
0.5 (the default) 2.1–2.2x, at 0.25 1.7x; with "all" 3.0–3.3x; with "decisions" 1.6x.
The amplification costs one no-grad forward plus one over W·(D-1) beam tokens per
amplified position, which is why "all" sits at about 3x.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.amplify import amplified_scores, gain_per_position, position_ids_from_mask
from benchmark.variants import VARIANTS

MYOPIC = "myopic"  # the attention implementation's registered name


@dataclass
class StuntConfig:
    """Settings of the myopic and stunted losses (unused fields are ignored by a variant)."""

    width: int = 4  # beam width W of the amplification
    depth: int = 2  # beam depth D
    positions: str = "sample"  # where to amplify: "all" | "sample" | "decisions"
    sample_frac: float = 0.5  # share of loss positions amplified with positions="sample"
    beta: float = 0.0  # myopic: gradient scale through earlier positions (1 = ordinary)
    penalty_weight: float = 1.0  # mu of stunted-penalty
    balance_measure: str = "grad"  # stunted-balance magnitude: "grad" (1 - p_true) | "logratio"
    balance_lambda: float = 0.5  # lambda of the "logratio" measure |log p_lambda - log p|


# --------------------------------------------------------------------------- myopic attention


def _scale_grad(x: torch.Tensor, beta: float) -> torch.Tensor:
    """x in value; beta times its gradient (x.detach() + beta * 0 keeps the value bit-exact)."""
    if beta == 1.0:
        return x
    if beta == 0.0:
        return x.detach()
    return x.detach() + beta * (x - x.detach())


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
    """Attention whose off-diagonal keys and values pass only `module.myopic_beta` of their gradient.

    Query i attends to keys j <= i. For j < i the score uses k_j and the output uses v_j with
    their gradient scaled by beta; for j = i (the position itself) the gradient is whole. The
    forward value equals ordinary attention. A transformers attention-interface function.
    """
    beta = float(getattr(module, "myopic_beta", 0.0))
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if key.shape[1] != query.shape[1]:  # grouped-query attention: share each kv head
        repeat = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    q_len, kv_len = query.shape[-2], key.shape[-2]
    offset = kv_len - q_len  # query i is key i + offset (a cache puts earlier keys first)

    key_mix, value_mix = _scale_grad(key, beta), _scale_grad(value, beta)
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


def prepare_model(model: torch.nn.Module, variant: str, cfg: StuntConfig) -> torch.nn.Module:
    """Set the model up for a variant (only myopic changes anything: its attention)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant == "myopic":
        register_myopic_attention()
        for module in model.modules():  # a plain attribute: never saved with the weights
            module.myopic_beta = float(cfg.beta)
        model.set_attn_implementation(MYOPIC)
    return model


def restore_attention(model: torch.nn.Module, implementation: str = "sdpa") -> torch.nn.Module:
    """Back to a standard attention (do this before saving; configs do not store it anyway)."""
    model.set_attn_implementation(implementation)
    return model


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


def balance_weights(helps: torch.Tensor, magnitude: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Non-negative weights, mean 1, that balance the two groups in count and in magnitude.

    With H = tokens where amplification helps and N = the others (n tokens in all):
        sum_H w = sum_N w = n / 2                       (count balance)
        sum_H w * m = sum_N w * m = (n / 2) * mu        (magnitude balance)
    Inside each group the weights are an exponential tilt of the uniform weights,
    w_t ∝ exp(g * m_t), the least-informative reweighting that moves the group's weighted mean
    magnitude to mu; g is found by bisection. mu is the overall mean magnitude clipped to the
    range both groups can reach. If the groups' magnitude ranges do not overlap, exact
    magnitude balance is impossible: each group goes as close as it can (reported as a gap).
    If a group is empty, nothing can balance it and the weights are uniform.

    Returns float64 weights and {"count_gap", "magnitude_gap"} (relative, 0 when balanced).
    """
    m = magnitude.double()
    n = m.numel()
    weights = torch.ones_like(m)
    n_help = int(helps.sum())
    if n_help == 0 or n_help == n:
        return weights, {"count_gap": 1.0, "magnitude_gap": 1.0, "degenerate": 1.0}
    m_h, m_n = m[helps], m[~helps]
    lo, hi = max(m_h.min(), m_n.min()).item(), min(m_h.max(), m_n.max()).item()
    mu = min(max(m.mean().item(), lo), hi) if lo <= hi else (lo + hi) / 2
    w_h = _tilt_to_mean(m_h, mu) * (n / 2)
    w_n = _tilt_to_mean(m_n, mu) * (n / 2)
    weights[helps], weights[~helps] = w_h, w_n
    mag_h, mag_n = (w_h * m_h).sum().item(), (w_n * m_n).sum().item()
    gap = abs(mag_h - mag_n) / max(mag_h + mag_n, 1e-300)
    return weights, {"count_gap": 0.0, "magnitude_gap": gap, "degenerate": 0.0}


def _tilt_to_mean(x: torch.Tensor, target: float, iters: int = 80) -> torch.Tensor:
    """Probabilities w ∝ exp(g x) with sum w x as close to `target` as x's range allows."""
    x_min, x_max = x.min().item(), x.max().item()
    span = x_max - x_min
    if span <= 1e-12 * max(1.0, abs(x_max)):
        return torch.full_like(x, 1.0 / x.numel())
    if target <= x_min:  # the limit g -> -inf: all weight on the smallest values
        w = (x == x.min()).double()
        return w / w.sum()
    if target >= x_max:
        w = (x == x.max()).double()
        return w / w.sum()
    z = (x - x_min) / span  # in [0, 1], so g in [-L, L] spans any reachable mean
    lo, hi = -1000.0, 1000.0
    for _ in range(iters):
        g = (lo + hi) / 2
        if (torch.softmax(g * z, 0) * x).sum().item() < target:
            lo = g
        else:
            hi = g
    return torch.softmax((lo + hi) / 2 * z, 0)


def amplification_penalty(
    logits: torch.Tensor, first_tokens: torch.Tensor, beam_weights: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Per position: sum over beams with first token x != target of weight * p_theta(x).

    = sum_{x != x_true} q(x) p_theta(x): the model's probability on the amplified prediction
    minus the truth. Each term is a product of probabilities and the q weights sum to 1, so the
    penalty lies in [0, 1] and its gradient vanishes as p_theta(x) -> 0. Unlike a -KL(q || p)
    "push away" term, which grows without bound as p_theta(x) -> 0, it cannot run away, and it
    never pushes down the true token, so it does not fight the CE term.
    """
    logp_first = logits.gather(-1, first_tokens) - logits.logsumexp(-1, keepdim=True)
    wrong = (first_tokens != targets[:, None]).to(beam_weights.dtype)
    return (beam_weights * wrong * logp_first.exp()).sum(-1)


def stunt_weights(
    variant: str, loss_mask: torch.Tensor, amp: dict, cfg: StuntConfig
) -> tuple[torch.Tensor, dict]:
    """Per-position loss weights [B, T-1] of skip and balance (plain CE gets `loss_mask`).

    `amp` is the `amplified_scores` output at the amplified positions.
    """
    B, T = loss_mask.shape
    if cfg.positions == "decisions":  # positions not amplified keep their ordinary weight
        weights = loss_mask[:, :-1].double()
    else:  # "all" and "sample": the loss covers the amplified positions only
        weights = torch.zeros(B, T - 1, dtype=torch.float64, device=loss_mask.device)
    helps = amp["q_true"] > amp["logp_true"].exp()
    stats = {"frac_helps": helps.double().mean().item() if len(helps) else 0.0}
    if variant == "stunted-skip":
        w = (~helps).double()
        stats["frac_dropped"] = 1.0 - w.mean().item() if len(w) else 0.0
    elif variant == "stunted-balance":
        if cfg.balance_measure == "grad":
            magnitude = 1.0 - amp["logp_true"].double().exp()
        elif cfg.balance_measure == "logratio":
            magnitude = gain_per_position(amp["logp_true"], amp["q_true"], cfg.balance_lambda).abs()
        else:
            raise ValueError(f"unknown balance_measure {cfg.balance_measure!r} (grad | logratio)")
        w, info = balance_weights(helps, magnitude)
        stats.update({f"balance_{k}": v for k, v in info.items()})
    else:
        raise ValueError(f"stunt_weights is for stunted-skip and stunted-balance, not {variant!r}")
    weights[amp["rows"], amp["ts"]] = w
    return weights, stats


# --------------------------------------------------------------------------- the loss


def training_loss(
    model: torch.nn.Module,
    variant: str,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    cfg: StuntConfig,
    decision_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The scalar loss of one step for `variant`, and floats to log.

    Stats: ce (plain mean CE over loss_mask, comparable across variants), and for stunted
    variants frac_amplified, frac_helps, amp_gain (mean log p_0.5 - log p at the amplified
    positions), plus frac_dropped (skip), penalty (penalty), balance_* gaps (balance).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    loss_mask = loss_mask.bool()
    if loss_mask[:, -1].any():
        raise ValueError("loss_mask[b, t] marks the prediction made at t of token t+1: the last column must be False")
    if variant == "myopic" and model.config._attn_implementation != MYOPIC:
        raise ValueError("call prepare_model(model, 'myopic', cfg) before training the myopic variant")

    amp = None
    if variant.startswith("stunted"):
        where = amplified_positions(loss_mask, cfg, decision_mask)
        rows, ts = where.nonzero(as_tuple=True)
        if len(rows):
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

    if variant == "stunted-penalty":
        penalty = amplification_penalty(logits[amp["rows"], amp["ts"]].float(), amp["first_tokens"],
                                        amp["beam_weights"], amp["targets"]).mean()
        stats["penalty"] = penalty.item()
        stats["frac_helps"] = (amp["q_true"] > amp["logp_true"].exp()).double().mean().item()
        return plain + cfg.penalty_weight * penalty, stats

    weights, more = stunt_weights(variant, loss_mask, amp, cfg)
    stats.update(more)
    weights = weights.to(ce.dtype)
    total = weights.sum()
    if total <= 0:  # every token dropped: a zero loss that still belongs to the graph
        return (ce * 0.0).sum(), stats
    return (weights * ce).sum() / total, stats
