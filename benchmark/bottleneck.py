"""The bottleneck planner: a model that must *use* its decision state, a known answer for
the causal follow rate.

The rhymes planner holds the slot at the line break "/" (a probe reads it there at 0.96)
but does not use that state: measured on the unstunted reference, noise of 10 standard
deviations written into "/" at layers 1-3 changed no completion, because every position of
line 2 can read ADJ and VERB itself and recompute the slot. A follow rate of 0 is then the
right answer, and the instrument needs a model where the right answer is high.

Here that model is built by construction: its attention lets no token after the decision
position see a token before it. Everything line 2 knows about line 1 must pass through the
decision token's states, where the model computes the plan (class and slot). Patching the
decision state at a layer where the plan is formed must then switch the completion to the
donor's plan, and patching the embedding layer (the same "/" in every prompt) must not.

- `bottleneck_attention`: a transformers attention-interface function (sdpa underneath)
  that adds the bottleneck to the causal mask. Positions are counted in real tokens
  (padding excluded), so left and right padding and the KV cache all work.
- `install(model, position)` makes a model bottlenecked for good; the position is stored in
  its config (``mesabench_bottleneck``), so a saved folder records what it is, and
  `benchmark.models.load_model` re-installs it on load (an ordinary load would silently
  evaluate a different model).
"""

from __future__ import annotations

import torch

BOTTLENECK = "mesabench_bottleneck"  # the attention implementation's registered name
CONFIG_KEY = "mesabench_bottleneck"  # the decision position, in the model's config


def bottleneck_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # [B, H, q, d]
    key: torch.Tensor,  # [B, H_kv, k, d]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Causal attention in which a query after the bottleneck position P (counted in real
    tokens) sees no key before P; P itself and the tokens after it are visible."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position = int(getattr(module.config, CONFIG_KEY))
    q_len, kv_len = query.shape[-2], key.shape[-2]
    if attention_mask is None:  # no padding: transformers may skip the mask
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(kv_len - q_len)
        allowed = allowed.expand(query.shape[0], 1, q_len, kv_len)
    elif attention_mask.dtype == torch.bool:
        allowed = attention_mask[..., :kv_len]
    else:
        allowed = attention_mask[..., :kv_len] == 0
    allowed = allowed.expand(query.shape[0], -1, -1, -1)
    # The last query is a real token (left padding) or sees every real key (right padding):
    # its row marks the real keys, and counting them gives each key's position.
    real = allowed[:, 0, -1, :]
    key_pos = real.long().cumsum(-1) - 1  # [B, kv]
    query_pos = key_pos[:, kv_len - q_len:]  # queries are the last q keys
    cut = (query_pos[:, :, None] > position) & (key_pos[:, None, :] < position)
    allowed = allowed & ~cut[:, None]
    return sdpa_attention_forward(module, query, key, value, allowed, **kwargs)


def register() -> None:
    """Register `bottleneck_attention` (with an explicit mask: it needs the padding)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(BOTTLENECK, bottleneck_attention)
    AttentionMaskInterface.register(BOTTLENECK, sdpa_mask)


def install(model: torch.nn.Module, position: int) -> torch.nn.Module:
    """Make ``model`` a bottleneck model at token ``position`` (in place; returned)."""
    register()
    setattr(model.config, CONFIG_KEY, int(position))
    model.set_attn_implementation(BOTTLENECK)
    return model


def reinstall(model: torch.nn.Module) -> torch.nn.Module:
    """Re-install the bottleneck of a loaded model whose config records one (else a no-op)."""
    position = getattr(model.config, CONFIG_KEY, None)
    return install(model, position) if position is not None else model
