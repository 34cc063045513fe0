"""Beam-search amplification: how much does a little external search improve a model?

At a scored position t (the prefix ends at token t, the target is token t+1):

    p    = the model's next-token distribution,
    q    = the distribution of the FIRST tokens of the W beams that a depth-D beam search finds
           from the prefix, each beam weighted by its sequence probability normalised over the W,
    p_λ  = (1 - λ)·p + λ·q,
    gain = mean over t of [log p_λ(x_{t+1}) - log p(x_{t+1})]   (nats).

At depth 1, q is p renormalised over its top W tokens (q_1), so q > p exactly where the true
token is among the top W: a depth-1 "gain" measures truncation of an underconfident model, not
lookahead. What searching deeper adds is the contrast of q_D with q_1; `amplified_scores`
returns both, and the gain is reported as gain(D), gain(1) and the lookahead part
gain(D) - gain(1). The stunted losses use the same contrast (`lookahead_movement`).

The engine is one batched, KV-cached "tree" beam search. A single forward pass over a batch of
rows gives p at every position (which is also the first beam step: the top-W of p) and the KV
cache of every row. The beams of ALL requested positions of a row are then appended to that
row's cache as extra tokens at once; a 4-D attention mask lets each beam token see only the real
tokens at positions <= t of its own row and its own ancestors among the beam tokens. So depth D
costs depth - 1 further forward passes over W tokens per scored position, and the shared
prefix is never recomputed nor copied per beam. Beam reordering is a reordering of mask rows,
not of the cache.

beam_search() runs the same engine with one position per row (the end of each prefix).

Why a tree and not one prefix at a time: transformers passes a ready 4-D mask through
unchanged and takes explicit position_ids, so the cache of the one forward can be reused
exactly (tests compare every beam with a naive full-recomputation search). Re-running a
beam search per prefix (method="prefix", kept as a cross-check) was 1.7-6x slower on an
8 × 64 batch, and beam_search is 7-23x faster per prefix than `generate` one prefix at a
time; on the evaluation's workload (amplified_scores at every position of 8 × 64, one
thread) the engine was 13-33x faster per position than `generate` per prefix, 16x at the
default W = 4, D = 3, with identical beams (bench/bench_amplify.py).

The engine needs an attention implementation that accepts a ready-made 4-D additive mask and
explicit position_ids (transformers' "eager" and "sdpa", the defaults of dense causal LMs such
as GPT-2 and Llama; not flash-attention, and not sliding-window layers).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache

# Budgets for one chunk of the tree search, so memory stays modest for any vocabulary and
# length: logit elements (beams × vocab, ~64 MB in float32) and attention-mask elements
# (beams × visible keys, which grows with the square of the beams per row).
LOGIT_BUDGET = 1 << 24
MASK_BUDGET = 1 << 23

# The λ grid of p_λ, chosen on dev for each depth (λ = 0 allowed), and the default search:
# training (stunting) and evaluation use the same W and D unless told otherwise. λ < 1:
# q is the beams' distribution and puts no mass outside them, so at λ = 1 one test target
# off the beams makes the gain -inf (harness 5 chose λ = 1 on dev for two rhymes models and
# reported gain -inf on test); any λ < 1 keeps p's support, so every gain term is finite.
DEFAULT_LAMBDAS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
DEFAULT_WIDTH = 4
DEFAULT_DEPTH = 2
DEFAULT_PARTICLES = 16  # M of the sampled amplification (`sampled_scores`)


@dataclass
class BeamResult:
    """Beams for N prefixes, best first: tokens [N, W, D] and summed log-probs [N, W]; and
    log p [N, V], the model's next-token distribution at the end of each prefix (the beams'
    first step), so a decoder gets p and q from one search."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    next_logp: torch.Tensor | None = None


# --------------------------------------------------------------------------- small helpers


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model in eval mode (dropout off) inside the block, its own mode restored after,
    even when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding (as `generate` does): 0 at the first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def topk_stable(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along the last dim, best first, ties broken by the lower index.

    torch.topk alone does not promise an order among equal values, and beam search must be
    deterministic, so the k winners are re-sorted by (value desc, index asc); a row whose k-th
    value equals the (k+1)-th (a tie across the cut) falls back to a full stable sort.
    """
    extra = x.shape[-1] > k  # one more than needed tells whether a tie crosses the cut
    vals, idx = x.topk(k + 1 if extra else k, dim=-1)
    if extra:
        tied = vals[..., k] == vals[..., k - 1]
    else:
        tied = torch.zeros(vals.shape[:-1], dtype=torch.bool, device=x.device)
    vals, idx = vals[..., :k], idx[..., :k]
    idx, order = idx.sort(dim=-1)
    vals = vals.gather(-1, order)
    vals, order = vals.sort(dim=-1, descending=True, stable=True)
    idx = idx.gather(-1, order)
    if tied.any():
        v2, i2 = x[tied].sort(dim=-1, descending=True, stable=True)
        vals[tied], idx[tied] = v2[..., :k], i2[..., :k]
    return vals, idx


def _left_pad(prefixes: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into (input_ids, attention_mask); the pad id is 0 and never attended."""
    length = max(len(p) for p in prefixes)
    ids = torch.zeros(len(prefixes), length, dtype=torch.long)
    mask = torch.zeros(len(prefixes), length, dtype=torch.long)
    for i, p in enumerate(prefixes):
        if len(p) == 0:
            raise ValueError("beam_search needs non-empty prefixes")
        ids[i, length - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, length - len(p):] = 1
    return ids.to(device), mask.to(device)


def _check_attention(model: torch.nn.Module) -> None:
    from benchmark.masked import is_masked

    if is_masked(model):  # every position sees the tokens after it: a beam's p would read its own future
        raise ValueError("amplification is not defined for masked models: they have no next-token distribution")
    impl = getattr(model.config, "_attn_implementation", None) or ""
    if impl.startswith("flash") or impl.startswith("paged"):
        raise ValueError(
            f"amplification needs an attention implementation that takes a 4-D mask (eager or sdpa), not {impl!r}"
        )


# --------------------------------------------------------------------------- the tree engine


def _tree_chunk(
    model: torch.nn.Module,
    full_cache: DynamicCache,
    attention_mask: torch.Tensor,  # [B, T] of the base forward
    position_ids: torch.Tensor,  # [B, T]
    item_rows: torch.Tensor,  # [n] row of each work item
    item_ts: torch.Tensor,  # [n, P] scored positions of each item (padded by repeating one)
    first_scores: torch.Tensor,  # [n, P, W] log p of the first tokens at those positions
    first_tokens: torch.Tensor,  # [n, P, W]
    depth: int,
    step: "Step",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Extend the W first-step beams (or particles) of n×P positions by depth-1 steps of
    ``step``; returns tokens, scores."""
    n, P, W = first_scores.shape
    T = attention_mask.shape[1]
    device = first_scores.device
    dtype = next(model.parameters()).dtype
    neg = torch.finfo(dtype).min

    # Each item gets its own copy of its row's cache (rows may repeat when a row is split).
    cache = DynamicCache([(layer.keys[item_rows], layer.values[item_rows]) for layer in full_cache.layers])

    # Which real tokens of the row a beam rooted at position t may see: positions <= t, not padding.
    base_visible = (torch.arange(T, device=device) <= item_ts[..., None]) & attention_mask[item_rows].bool()[:, None, :]
    base_visible = base_visible[:, :, None, :].expand(n, P, W, T).reshape(n, P * W, T)
    base_pos = position_ids[item_rows[:, None], item_ts]  # [n, P]

    scores, tokens = first_scores, first_tokens[..., None]  # [n,P,W], [n,P,W,1]
    n_extra = (depth - 1) * P * W
    # ancestors[i, p, w, e]: beam (p, w) of item i contains the fed beam token in extra slot e.
    ancestors = torch.zeros(n, P, W, n_extra, dtype=torch.bool, device=device)
    self_slot = torch.arange(P * W, device=device)
    for depth_reached in range(1, depth):
        offset = (depth_reached - 1) * P * W
        flat_anc = ancestors.view(n, P * W, n_extra)
        flat_anc[:, self_slot, offset + self_slot] = True  # each fed token sees itself
        visible = torch.cat([base_visible, flat_anc[:, :, : offset + P * W]], dim=-1)
        mask4d = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, neg)[:, None]
        pos = (base_pos[..., None] + depth_reached).expand(n, P, W).reshape(n, P * W)
        out = model(
            input_ids=tokens[..., -1].reshape(n, P * W),
            attention_mask=mask4d,
            position_ids=pos,
            cache=cache,
            use_cache=True,
        )
        logp = F.log_softmax(out.logits.float(), dim=-1)
        scores, parent, new_tok = step(scores, logp.view(n, P, W, -1), depth_reached == depth - 1)
        if new_tok is None:  # the step summed its token out instead of choosing one (the last)
            break
        tokens = torch.cat([tokens.gather(2, parent[..., None].expand(-1, -1, -1, depth_reached)),
                            new_tok[..., None]], dim=-1)
        ancestors = ancestors.gather(2, parent[..., None].expand(-1, -1, -1, n_extra))
    return tokens, scores


# One step of the tree search: (scores [n,P,W], next-token log p [n,P,W,V], is it the last
# step) -> (new scores, parent index [n,P,W] into the W, new token [n,P,W] or None).
Step = Callable[[torch.Tensor, torch.Tensor, bool], tuple]


def beam_step(scores: torch.Tensor, logp: torch.Tensor, last: bool) -> tuple:
    """Beam search: expand every live beam by every token and keep the W best sums."""
    n, P, W, V = logp.shape
    candidates = scores[..., None] + logp  # every live beam × every token
    scores, flat = topk_stable(candidates.view(n, P, W * V), W)
    return scores, flat // V, flat % V


def sample_step(generator: torch.Generator | None) -> Step:
    """Sampling: each particle draws its own next token from p (no reordering); on the last
    step the token is summed out instead of drawn: the particle's score gains
    log E_c[p(c)] = log sum_c p(c)^2, exactly (Rao-Blackwellised: the same expectation as
    drawing c and adding log p(c), without that draw's noise)."""

    def step(scores: torch.Tensor, logp: torch.Tensor, last: bool) -> tuple:
        n, P, M, V = logp.shape
        if last:
            return scores + torch.logsumexp(2 * logp, dim=-1), None, None
        drawn = torch.multinomial(logp.exp().reshape(-1, V), 1, generator=generator).view(n, P, M)
        keep = torch.arange(M, device=logp.device).expand(n, P, M)
        return scores + logp.gather(-1, drawn[..., None])[..., 0], keep, drawn

    return step


def _search_from_cache(
    model: torch.nn.Module,
    cache: DynamicCache | None,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    rows: torch.Tensor,
    ts: torch.Tensor,
    logp_first: torch.Tensor,  # [N, V] log p at (rows, ts)
    width: int,
    depth: int,
    beams_per_chunk: int | None = None,
    first: tuple[torch.Tensor, torch.Tensor] | None = None,
    step: Step = beam_step,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beams of depth `depth` rooted at every (row, t); returns tokens [N, W, D] and scores [N, W].

    ``first`` (log p, tokens), each [N, W], replaces the top W of ``logp_first`` as the first
    step (the sampler's draws), and ``step`` extends them (`sample_step` sums its last token
    out, so its tokens are [N, W, D-1])."""
    N, V = logp_first.shape
    if first is not None:
        scores1, tok1 = first
    elif width > V:
        raise ValueError(f"beam width {width} exceeds the vocabulary ({V})")
    else:
        scores1, tok1 = topk_stable(logp_first, width)
    if depth == 1:
        return tok1[..., None], scores1
    budget = beams_per_chunk or max(width, LOGIT_BUDGET // V)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and N and int(position_ids[rows, ts].max()) + depth - 1 >= limit:
        raise ValueError(
            f"a depth-{depth} beam from the last scored position needs position id "
            f"{int(position_ids[rows, ts].max()) + depth - 1}, beyond the model's {limit} positions: "
            f"score fewer positions or use a model with n_positions >= sequence length + depth - 1"
        )

    # Work items: the positions of one row, at most `per_item` of them (rows stay together so
    # their beams share one cache copy). x = P·W beams of an item see T + (D-1)·x keys.
    T = attention_mask.shape[1]

    def mask_size(beams: int) -> int:
        return beams * (T + (depth - 1) * beams)

    per_item = max(1, budget // width)
    while per_item > 1 and mask_size(per_item * width) > MASK_BUDGET:
        per_item = per_item * 3 // 4
    order = torch.argsort(rows, stable=True)
    sorted_rows = rows[order].tolist()
    items: list[list[int]] = []
    start = 0
    for i in range(1, N + 1):
        if i == N or sorted_rows[i] != sorted_rows[start] or i - start == per_item:
            items.append(order[start:i].tolist())
            start = i

    out_tokens = None  # [N, W, tokens the step keeps], allocated when the first chunk says how many
    out_scores = torch.empty(N, width, dtype=logp_first.dtype, device=logp_first.device)
    i = 0
    while i < len(items):
        # Greedily take items while n × P × W stays inside the budget.
        P = len(items[i])
        j = i + 1
        while j < len(items) and (j - i + 1) * max(P, len(items[j])) * width <= budget and (
            (j - i + 1) * mask_size(max(P, len(items[j])) * width) <= MASK_BUDGET
        ):
            P = max(P, len(items[j]))
            j += 1
        chunk = items[i:j]
        idx = torch.tensor([it + [it[0]] * (P - len(it)) for it in chunk], device=rows.device)  # [n, P]
        tokens, scores = _tree_chunk(
            model, cache, attention_mask, position_ids, rows[idx[:, 0]], ts[idx], scores1[idx], tok1[idx], depth, step
        )
        valid = torch.tensor([[k < len(it) for k in range(P)] for it in chunk], device=rows.device)
        if out_tokens is None:
            out_tokens = torch.empty(N, width, tokens.shape[-1], dtype=torch.long, device=logp_first.device)
        out_tokens[idx[valid]] = tokens[valid]
        out_scores[idx[valid]] = scores[valid]
        i = j
    if out_tokens is None:  # no positions at all
        out_tokens = torch.empty(N, width, depth, dtype=torch.long, device=logp_first.device)
    return out_tokens, out_scores


# --------------------------------------------------------------------------- public API


@torch.no_grad()
def beam_search(
    model: torch.nn.Module,
    prefixes: Sequence[Sequence[int]],
    width: int,
    depth: int,
    batch_size: int = 16,
) -> BeamResult:
    """Beam search of width W and depth D from each prefix (lists of token ids, any lengths).

    Standard semantics: the first step keeps the top-W tokens; every later step expands every
    live beam by every token and keeps the top W by summed log-prob. No length penalty, no EOS:
    all beams run D steps. Ties go to the lower (beam, token) index. Batched over `batch_size`
    prefixes of similar length (left padding), with the KV cache; results keep the input order.
    """
    _check_attention(model)
    device = model_device(model)
    if len(prefixes) == 0:
        empty = torch.empty(0, width, depth, dtype=torch.long, device=device)
        return BeamResult(empty, torch.empty(0, width, device=device), torch.empty(0, 0, device=device))
    # Sorting by length puts similar lengths in one batch: the prefix pass, which dominates
    # the cost, then wastes little time on padding (1.6x faster on prefixes of 8..48 tokens).
    order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))
    all_tokens, all_scores, all_logp = [], [], []
    with eval_mode(model):
        for s in range(0, len(prefixes), batch_size):
            ids, mask = _left_pad([prefixes[i] for i in order[s : s + batch_size]], device)
            pos = position_ids_from_mask(mask)
            # logits_to_keep=1: only the last position's logits are needed (saves the LM head).
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=depth > 1, logits_to_keep=1)
            logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)
            n, T = ids.shape
            rows = torch.arange(n, device=device)
            ts = torch.full((n,), T - 1, device=device)
            cache = out.cache if depth > 1 else None
            tokens, scores = _search_from_cache(model, cache, mask, pos, rows, ts, logp, width, depth)
            all_tokens.append(tokens)
            all_scores.append(scores)
            all_logp.append(logp)
    back = torch.empty(len(order), dtype=torch.long, device=device)
    back[torch.tensor(order, device=device)] = torch.arange(len(order), device=device)
    return BeamResult(tokens=torch.cat(all_tokens)[back], logprobs=torch.cat(all_scores)[back],
                      next_logp=torch.cat(all_logp)[back])


def _as_positions(
    positions, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, ts) tensors; by default every real position whose next token is real too."""
    device = input_ids.device
    if positions is None:
        real = attention_mask.bool()
        scorable = real[:, :-1] & real[:, 1:]
        rows, ts = scorable.nonzero(as_tuple=True)
        return rows, ts
    pos = torch.as_tensor(positions, dtype=torch.long, device=device).reshape(-1, 2)
    rows, ts = pos[:, 0], pos[:, 1]
    if len(ts) and (ts.max() >= input_ids.shape[1] - 1 or ts.min() < 0):
        raise ValueError("a scored position t needs a next token: 0 <= t < T - 1")
    return rows, ts


def _prefix_pass(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 positions, use_cache: bool) -> tuple:
    """The one forward over the batch that every search starts from (the caller sets eval
    mode): input_ids, attention_mask and position ids on the model's device, the scored
    positions' rows, ts and targets, log p [N, V] there, and the KV cache (None without it)."""
    _check_attention(model)
    device = model_device(model)
    input_ids = input_ids.to(device)
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device).long()
    rows, ts = _as_positions(positions, input_ids, attention_mask)
    pos_ids = position_ids_from_mask(attention_mask)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos_ids, use_cache=use_cache)
    logp = F.log_softmax(out.logits[rows, ts].float(), dim=-1)  # [N, V]
    return (input_ids, attention_mask, pos_ids, rows, ts, input_ids[rows, ts + 1], logp,
            out.cache if use_cache else None)


@torch.no_grad()
def amplified_scores(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    positions: Sequence[tuple[int, int]] | torch.Tensor | None = None,
    width: int = DEFAULT_WIDTH,
    depth: int = DEFAULT_DEPTH,
    *,
    method: str = "tree",
    return_logp: bool = False,
    beams_per_chunk: int | None = None,
) -> dict[str, torch.Tensor]:
    """p and the beam distribution q at positions (row, t) of a batch [B, T].

    positions: list of (row, t) pairs or a LongTensor [N, 2]; None = every real position with a
    real next token. Padding may be on either side (position ids skip left padding).
    The model runs in eval mode (dropout off) and its mode is restored afterwards.

    method="tree" (default): one forward for p and the cache, then depth-1 cached steps for all
    positions at once. method="prefix": re-runs beam_search on every prefix (slow; a
    cross-check).

    Returns (all on the model's device, N = number of positions):
      rows, ts, targets [N]       where, and the true next token x_{t+1}
      logp_true [N]               log p(x_{t+1})
      q_true [N]                  q(x_{t+1}) (a probability; 0 if no beam starts with it)
      first_tokens [N, W]         first token of each beam, best beam first
      beam_weights [N, W]         beam probabilities normalised over the W beams (q = their sum
                                  per first token)
      beam_logprobs [N, W]        summed log-probs of the beams
      beam_tokens [N, W, D]
      top_tokens, top_logp [N, W] the top W tokens of p and their log p, best first (the
                                  first step of every beam: q_D is supported on them)
      q1_true [N]                 q_1(x_{t+1}): the depth-1 q, p renormalised over the top W
      logp [N, V]                 full log p (only with return_logp=True)
    """
    with eval_mode(model):
        input_ids, attention_mask, pos_ids, rows, ts, targets, logp, cache = _prefix_pass(
            model, input_ids, attention_mask, positions, use_cache=method == "tree" and depth > 1)
        if method == "tree":
            beam_tokens, beam_logprobs = _search_from_cache(
                model, cache, attention_mask, pos_ids, rows, ts, logp, width, depth, beams_per_chunk
            )
        elif method == "prefix":
            prefixes = [
                input_ids[r, : t + 1][attention_mask[r, : t + 1].bool()].tolist()
                for r, t in zip(rows.tolist(), ts.tolist())
            ]
            result = beam_search(model, prefixes, width, depth)
            beam_tokens, beam_logprobs = result.tokens, result.logprobs
        else:
            raise ValueError(f"unknown method {method!r} (tree | prefix)")

    weights = torch.softmax(beam_logprobs, dim=-1)
    first = beam_tokens[:, :, 0]
    # The depth-1 search: the top W tokens of p, renormalised (the truncation baseline).
    top_logp, top_tokens = topk_stable(logp, width)
    result = {
        "rows": rows,
        "ts": ts,
        "targets": targets,
        "logp_true": logp.gather(1, targets[:, None])[:, 0],
        "q_true": q_mass(first, weights, targets),
        "first_tokens": first,
        "beam_weights": weights,
        "beam_logprobs": beam_logprobs,
        "beam_tokens": beam_tokens,
        "top_tokens": top_tokens,
        "top_logp": top_logp,
        "q1_true": q_mass(top_tokens, torch.softmax(top_logp, dim=-1), targets),
    }
    if return_logp:
        result["logp"] = logp
    return result


@torch.no_grad()
def sampled_scores(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    positions: Sequence[tuple[int, int]] | torch.Tensor | None = None,
    particles: int = DEFAULT_PARTICLES,
    depth: int = DEFAULT_DEPTH,
    *,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """p and the sampled amplified distribution q̂ at positions (row, t) of a batch [B, T]:
    beam search's "infinite width" limit, particle-filter style.

    The target. Normalised over every continuation, the sequence distribution's first-token
    marginal is p itself, so plain Monte Carlo (counting first tokens of samples from p)
    estimates p: no amplification. What beam search does is favour first tokens whose
    continuations are probable; its soft, unbounded-width form is the sequence distribution
    squared (weight each sequence by its probability):

        q_D(x) = sum_c p(x c)^2 / sum_s p(s)^2   (c over continuations of D-1 tokens),
        q_1(x) = p(x)^2 / sum_x' p(x')^2         (the same at depth 1: a sharpening of p),

    so q_D(x) / q_1(x) is proportional to sum_c p(c | x)^2, how concentrated x's continuation
    is. The estimate. M particles s_i are drawn from the model (first token from p, then
    each next token from p given the particle so far), so "weight by probability" is the
    importance weight of p^2 against p: w_i ∝ p(s_i), self-normalised over the M (q̂ is a
    ratio of two unbiased sums: consistent, biased O(1/M); an unbiased q̂ does not exist for
    an unknown normaliser). The last token is summed out instead of drawn (E_c p(c) =
    sum_c p(c)^2 exactly, `sample_step`), so at depth 2 only the first tokens are random.
    q̂_1 uses the same particles with w_i ∝ p(x_i): the contrast q̂_D - q̂_1 is exactly 0 at
    depth 1 and the draw's noise in which first tokens appear cancels in it.

    The draws come from ``generator`` (default: torch's global generator, which training
    seeds), so the result is deterministic for a seed. One forward and depth - 1 cached
    steps over M tokens per position, as `amplified_scores` (the same engine).

    Returns (N = number of positions, M = particles), all on the model's device:
      rows, ts, targets, logp_true [N]   as `amplified_scores`
      first_tokens [N, M]                each particle's first token (drawn from p, repeats allowed)
      first_logp [N, M]                  log p of it
      sample_tokens [N, M, max(D-1, 1)]  the particle's drawn tokens (the D-th is summed out)
      sample_logweights [N, M]           log p(first D-1 tokens) + log sum_c p(c | them)^2
      sample_weights [N, M]              w_i: q̂_D = their sum per first token
      first_weights [N, M]               the depth-1 weights, p(x_i) normalised over the M
      q_true, q1_true [N]                q̂_D(x_{t+1}) and q̂_1(x_{t+1})
    """
    with eval_mode(model):
        input_ids, attention_mask, pos_ids, rows, ts, targets, logp, cache = _prefix_pass(
            model, input_ids, attention_mask, positions, use_cache=depth > 1)
        first = torch.multinomial(logp.exp(), particles, replacement=True, generator=generator) if len(rows) \
            else torch.empty(0, particles, dtype=torch.long, device=logp.device)
        first_logp = logp.gather(1, first)
        tokens, logweights = _search_from_cache(model, cache, attention_mask, pos_ids, rows, ts, logp, particles,
                                                depth, first=(first_logp, first), step=sample_step(generator))
    weights, first_weights = torch.softmax(logweights, dim=-1), torch.softmax(first_logp, dim=-1)
    return {
        "rows": rows,
        "ts": ts,
        "targets": targets,
        "logp_true": logp.gather(1, targets[:, None])[:, 0],
        "first_tokens": first,
        "first_logp": first_logp,
        "sample_tokens": tokens,
        "sample_logweights": logweights,
        "sample_weights": weights,
        "first_weights": first_weights,
        "q_true": q_mass(first, weights, targets),
        "q1_true": q_mass(first, first_weights, targets),
    }


def amplified_distribution(beams: BeamResult, lam: float) -> torch.Tensor:
    """p_λ = (1 - λ)·p + λ·q over the whole vocabulary at the end of each prefix: [N, V],
    float64, from one `beam_search`. q is the beams' definition above: each first token gets
    the summed weight (softmax of the beam log-probs over the W) of the beams it starts."""
    p = beams.next_logp.double().exp()
    if lam == 0:
        return p
    weights = torch.softmax(beams.logprobs.double(), dim=-1)
    q = torch.zeros_like(p).scatter_add_(1, beams.tokens[:, :, 0], weights)
    return (1 - lam) * p + lam * q


def q_mass(first_tokens: torch.Tensor, beam_weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """q(token) for each row: the summed weight of the beams whose first token it is."""
    return (beam_weights * (first_tokens == tokens[:, None])).sum(-1)


def lookahead_shift(amp: dict[str, torch.Tensor]) -> torch.Tensor:
    """q_D(x) - q_1(x) for each of the top W tokens x of p: [N, W].

    What a depth-D search moves beyond truncation to the top W. It is exactly 0 for a search
    of depth 1, which is what makes it a measure of lookahead.
    """
    q_d = (amp["beam_weights"][:, None, :] * (amp["first_tokens"][:, None, :] == amp["top_tokens"][:, :, None])).sum(-1)
    # q_1 in the dtype q_D was computed in: at depth 1 both are then bit-identical.
    q_1 = torch.softmax(amp["top_logp"].to(amp["beam_weights"].dtype), dim=-1)
    return (q_d - q_1).double()


def lookahead_support(amp: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the lookahead shift q_D - q_1 lives: tokens [N, K], the shift there (float64)
    and log p there when amplified [N, K].

    Beams (`amplified_scores`): the top W tokens of p, one entry per token
    (`lookahead_shift`). Particles (`sampled_scores`): one entry per particle, w_i - w1_i at
    its first token; a token drawn twice has two entries, which add up, and that is exact
    wherever the shift is used linearly (`lookahead_movement`), not under a clamp. A learned
    amplifier's q_A (`benchmark.amplifier`, key "amplifier_q"): q_A - p at the top W tokens,
    the only ones where q_A differs from p.
    """
    if "amplifier_q" in amp:
        return amp["top_tokens"], (amp["amplifier_q"].double() - amp["top_logp"].double().exp()), amp["top_logp"]
    if "sample_weights" in amp:
        return amp["first_tokens"], (amp["sample_weights"] - amp["first_weights"]).double(), amp["first_logp"]
    return amp["top_tokens"], lookahead_shift(amp), amp["top_logp"]


def lookahead_movement(amp: dict[str, torch.Tensor], logp_support: torch.Tensor | None = None) -> torch.Tensor:
    """First-order movement toward the amplified prediction, beyond truncation, of one
    cross-entropy step on each token: [N], float64.

    A gradient step on the logits z of one position with CE loss at the true token y moves z
    by -η(p - e_y). To first order that changes KL(q ‖ p) by -η (p - q)·(p - e_y), so the
    movement toward q is m(q) = (p - q)·(p - e_y). The lookahead part, m(q_D) - m(q_1), is
        m = (q_D(y) - q_1(y)) - Σ_x (q_D(x) - q_1(x)) p(x),
    exactly 0 for a depth-1 search. Positive: training on this token moves the model toward
    what deeper search finds. It is linear in q_D - q_1, so it works on beams and on
    particles alike (`lookahead_support`). ``logp_support`` (default: the model's log p there
    when amplified) lets a caller use the log p of the very forward pass it trains on.
    """
    tokens, shift, logp = lookahead_support(amp)
    p = (logp if logp_support is None else logp_support).double().exp()
    on_true = (shift * (tokens == amp["targets"][:, None])).sum(-1)
    return on_true - (shift * p).sum(-1)


def gain_per_position(logp_true: torch.Tensor, q_true: torch.Tensor, lam: float) -> torch.Tensor:
    """log p_λ(x) - log p(x) per position, in float64 (λ = 0 gives exactly 0)."""
    lp = logp_true.double()
    if lam == 0:
        return torch.zeros_like(lp)
    log_q = torch.log(q_true.double())  # -inf where no beam starts with the true token
    log_p_part = lp + math.log1p(-lam) if lam < 1 else torch.full_like(lp, -math.inf)
    log_mix = torch.logaddexp(log_p_part, log_q + math.log(lam))
    return log_mix - lp


def gain_at_lambdas(
    logp_true: torch.Tensor, q_true: torch.Tensor, lambdas: Sequence[float] = DEFAULT_LAMBDAS
) -> torch.Tensor:
    """Mean gain (nats) for each λ; choose λ on dev with this, report gain_per_position on test."""
    return torch.stack([gain_per_position(logp_true, q_true, lam).mean() for lam in lambdas])
