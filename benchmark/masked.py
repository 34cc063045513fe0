"""The masked reference (issue 14, fix #1): a GPT-2 trained to predict masked words from both
sides, writing by iterative mask filling after a fixed prompt, and the adapter through which
the harness evaluates it.

**The model** is the references' GPT-2 (same size, init, data, steps, batch and learning
rate; `benchmark.train`) with its causal mask off: ``config.is_causal = false`` makes
transformers build a padding-only (bidirectional) mask, so every position attends to every
real token. The word-level tokenizer has one more token, ``<mask>``, after the task words.
The config also records the completion region's size (``mesabench_mask_slots``), so a saved
folder says how it writes and `is_masked` recognises it on load.

**The layout.** A model turn is a visible text (the prompt, and for chess the moves so far)
followed by a *completion region* of S = max_words + 1 slots: the task's budget of words and
one end slot, the same for every item, so the count leaks nothing about the answer. In
training the region holds the reference's next S tokens, the end token after the completion
and the end token again in every slot after it. The turns are found by replaying the
reference through the task's own `play` (`turn_texts`): the texts the harness gives the
model at each of its turns (one for rhymes and constrained; one per attacker move in chess).

**The masking rule** (Mask-Predict's, Ghazvininejad et al. 2019): per sequence and step, one
turn of the example is drawn uniformly, a count k is drawn uniformly from 1..S and k of the S
region slots, uniformly without replacement, are replaced by ``<mask>``. The visible text is
never masked. The loss is the mean cross-entropy over the masked slots of the batch and
nothing else: an unmasked slot or a prompt token gives no loss and no gradient to its
logits. Drawing k uniformly trains every masking level that mask filling passes through
(from S masks down to one). Its defining property, tested on a toy
(`tests/test_masked.py`): the loss counts only masked slots, and the gradient of a masked
slot's loss reaches the inputs on both sides of it.

**Writing** (`fill`): the visible text and S masks; one forward pass per step, and each
step fills the one masked slot whose most likely token is most probable
(most-confident-first, ties to the leftmost, ``<mask>`` never predicted). Left to right would
make the model write as a causal model does and throw away what both-sided prediction buys;
filling the most determined slot first lets it commit to the end of a line (a rhyme word,
the end token) before the words that lead there, which is the seed's point: what it would
have to plan, it can write down. A turn is done once every slot before the first filled end
token is filled (a filled slot is never revised, so later fills cannot change the text); the
text up to that end token is cut like any completion (`models.within_budget`) and the task's
verifier scores it.

**The adapter** (what the harness calls for a masked model; `LoadedModel.masked`):

- success: greedy is `fill`; beam search has no counterpart here;
- task loss (`token_scores`): each completion token predicted with its turn's visible text,
  the region's slots before it revealed and the rest masked: log p(c_1..c_L) by the chain
  rule over the region, left to right, in nats per completion token as the causal loss is
  (tokens outside every turn's S slots, e.g. a defender's square after a promotion, are
  not scored);
- probes (`hidden_states_at`): the state of the decision token with everything after it
  masked, i.e. the text up to the decision followed by S masks (every task's decisions sit
  at the end of the prompt, so this is the state mask filling starts from);
- causal follow rate: the same patch, held in every forward pass of the filling
  (`benchmark.causal`);
- amplification gain, success@beam and amplified decoding need a next-token distribution
  and a beam search over a KV cache: `NOT_DEFINED` says so in one line of the cell, and
  `benchmark.amplify` refuses a masked model rather than give a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.models import encode_examples, one_token_per_word, token_index, tokenize, within_budget

if TYPE_CHECKING:
    from benchmark.models import LoadedModel

MASK_TOKEN = "<mask>"
SLOTS_KEY = "mesabench_mask_slots"  # the completion region's size S, in the model's config
IGNORE = -100  # a target that gives no loss (F.cross_entropy's ignore_index)
NOT_DEFINED = ("not defined for masked models: success@beam, amplification gain and amplified decoding "
               "(each needs a next-token distribution and a beam search over a KV cache)")


# --------------------------------------------------------------------------- the model


def is_masked(model_or_config) -> bool:
    """Whether a model (or its config) attends both ways: ``is_causal`` set to false."""
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, "is_causal", True) is False


def slots_for(tasks) -> int:
    """S, the completion region of a model of ``tasks`` (`tasks.base.Task` objects): the
    largest budget of words and one end slot."""
    return max(int(task.max_words) for task in tasks) + 1


def make_masked(model: torch.nn.Module, slots: int) -> torch.nn.Module:
    """Turn a freshly built causal LM into a masked one (in place; returned): bidirectional
    attention, and its region of ``slots`` recorded in the config (so in config.json)."""
    model.config.is_causal = False
    setattr(model.config, SLOTS_KEY, int(slots))
    return model


def mask_slots(loaded: LoadedModel) -> int:
    """S of a loaded masked model (`check` has made sure it is there)."""
    return int(getattr(loaded.model.config, SLOTS_KEY))


def check(loaded: LoadedModel, prompts: list[str]) -> None:
    """Refuse, in one line, a masked model the adapter cannot evaluate: no mask token, a
    tokenizer that is not one token per word (the region's slots are words), no recorded
    region, or prompts that leave no room for it in the context."""
    from benchmark.safety import SubmissionError

    tok = loaded.tokenizer
    if tok.mask_token_id is None:
        raise SubmissionError("a masked model (is_causal=false) needs a mask token in its tokenizer")
    if not one_token_per_word(tok):
        raise SubmissionError("a masked model is evaluated with a word-level tokenizer only: its completion "
                              "region counts words")
    if getattr(loaded.model.config, SLOTS_KEY, None) is None:
        raise SubmissionError(f"a masked model must record its completion region ({SLOTS_KEY} in config.json)")
    longest = max(len(ids) for ids in tokenize(tok, prompts)["input_ids"]) + mask_slots(loaded)
    if loaded.context and longest > loaded.context:
        raise SubmissionError(f"a prompt and the {mask_slots(loaded)} mask slots take up to {longest} tokens, "
                              f"longer than the model's context of {loaded.context}")


# --------------------------------------------------------------------------- turns


def turn_texts(task, example: dict) -> list[str]:
    """The texts the task's `play` gives the model at each of its turns when it answers with
    the reference completion (a teacher): the prompt for a single-turn task; for chess the
    prompt and the moves so far at each attacker move. Only texts that the reference
    continues are kept."""
    full = example["prompt"] + example["completion"]
    seen: list[str] = []

    def teacher(texts: list[str]) -> list[str]:
        seen.extend(texts)
        return [full[len(t):] if full.startswith(t) else "" for t in texts]

    task.play([example], teacher)
    return [t for t in seen if full.startswith(t)]


def turn_starts(task, example: dict, starts: list[int]) -> list[int]:
    """The token index at which each turn's region begins (``starts``: each token's first
    character, as `encode_examples` gives them)."""
    return [sum(1 for s in starts if s < len(text)) for text in turn_texts(task, example)]


def mark_turns(task, examples: list[dict], items: list[dict]) -> list[dict]:
    """`encode_examples` items of ``examples`` with their turns' token indices (``turns``)."""
    for ex, it in zip(examples, items):
        it["turns"] = turn_starts(task, ex, it["starts"])
    return items


# --------------------------------------------------------------------------- layout


def layout(visible: list[list[int]], regions: torch.Tensor, pad_id: int,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, region positions [B, S]): each row's visible
    tokens, then its region (``regions`` [B, S]: tokens or masks)."""
    slots = regions.shape[1]
    width = max(len(v) for v in visible) + slots
    ids = torch.full((len(visible), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(visible), width), dtype=torch.long)
    for i, v in enumerate(visible):
        ids[i, : len(v)] = torch.as_tensor(v, dtype=torch.long)
        ids[i, len(v): len(v) + slots] = regions[i]
        attn[i, : len(v) + slots] = 1
    where = torch.as_tensor([len(v) for v in visible])[:, None] + torch.arange(slots)
    return ids.to(device), attn.to(device), where.to(device)


def region_logits(model: torch.nn.Module, ids: torch.Tensor, attn: torch.Tensor, where: torch.Tensor,
                  **kwargs) -> tuple[torch.Tensor, tuple | None]:
    """The logits [B, S, V] at the region slots (and the hidden states when asked)."""
    out = model(input_ids=ids, attention_mask=attn, use_cache=False, **kwargs)
    rows = torch.arange(ids.shape[0], device=ids.device)[:, None]
    return out.logits[rows, where], getattr(out, "hidden_states", None)


def prediction_logp(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """log p over the vocabulary without ``<mask>``, which a slot is never filled with."""
    return F.log_softmax(logits.float().index_fill(-1, torch.tensor([mask_id], device=logits.device),
                                                   -torch.inf), dim=-1)


# --------------------------------------------------------------------------- training


@dataclass
class MaskedBatch:
    input_ids: torch.Tensor  # [B, T] with <mask> at the masked slots
    attention_mask: torch.Tensor
    where: torch.Tensor  # [B, S] the region slots' positions
    targets: torch.Tensor  # [B, S] the true token at masked slots, IGNORE elsewhere


class MaskedObjective:
    """The masked variant's loss (the module docstring's masking rule), with its own seeded
    generator: the draws are the same for a seed, and nothing else draws from it."""

    def __init__(self, mask_id: int, eos_id: int, pad_id: int, slots: int, seed: int):
        self.mask_id, self.eos_id, self.pad_id, self.slots = mask_id, eos_id, pad_id, slots
        self.generator = torch.Generator().manual_seed(seed)

    def _randint(self, n: int) -> int:
        return int(torch.randint(n, (1,), generator=self.generator))

    def batch(self, items: list[dict], device: torch.device) -> MaskedBatch:
        """One step's sequences: per item a turn, its region and the masked slots."""
        S = self.slots
        visible, regions, targets = [], torch.empty(len(items), S, dtype=torch.long), torch.full(
            (len(items), S), IGNORE, dtype=torch.long)
        for i, it in enumerate(items):
            start = it["turns"][self._randint(len(it["turns"]))]
            region = torch.as_tensor((it["ids"][start:start + S] + [self.eos_id] * S)[:S])
            k = 1 + self._randint(S)  # 1..S masks
            chosen = torch.randperm(S, generator=self.generator)[:k]
            targets[i, chosen] = region[chosen]
            region[chosen] = self.mask_id
            visible.append(it["ids"][:start])
            regions[i] = region
        ids, attn, where = layout(visible, regions, self.pad_id, device)
        return MaskedBatch(ids, attn, where, targets.to(device))

    def loss(self, model: torch.nn.Module, items: list[dict]) -> tuple[torch.Tensor, dict[str, float]]:
        """The mean cross-entropy over the masked slots of one step, and floats to log."""
        b = self.batch(items, next(model.parameters()).device)
        logits, _ = region_logits(model, b.input_ids, b.attention_mask, b.where)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), b.targets.reshape(-1),
                               ignore_index=IGNORE)
        return loss, {"ce": loss.item(), "frac_masked": (b.targets != IGNORE).double().mean().item()}


# --------------------------------------------------------------------------- writing


def _visible_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenize(tokenizer, texts)["input_ids"]


@torch.no_grad()
def fill_regions(model: torch.nn.Module, visible: list[list[int]], slots: int, mask_id: int, eos_id: int,
                 pad_id: int) -> list[list[int]]:
    """Each row's region of ``slots`` masks after its visible tokens, filled most-confident
    first, one slot per row and forward pass, until every slot before the first filled end
    token is filled; returns the tokens before that end token (all slots without one).

    Every row stays in every forward pass (a finished row is left as it is), so a patch that
    holds one vector per row (`benchmark.causal.patched`) holds throughout."""
    device = next(model.parameters()).device
    ids, attn, where = layout(visible, torch.full((len(visible), slots), mask_id), pad_id, device)
    rows = torch.arange(len(visible), device=device)
    filled = torch.zeros(len(visible), slots, dtype=torch.bool, device=device)

    def region() -> torch.Tensor:
        return ids[rows[:, None], where]

    def finished() -> torch.Tensor:
        # The first unfilled slot; a row is final when no slot is unfilled or a filled end
        # token lies before it.
        gap = torch.where((~filled).any(-1), (~filled).long().argmax(-1), torch.full_like(rows, slots))
        before = torch.arange(slots, device=device)[None] < gap[:, None]
        return (gap == slots) | (before & filled & (region() == eos_id)).any(-1)

    done = finished()
    while not done.all():
        logits, _ = region_logits(model, ids, attn, where)
        confidence, token = prediction_logp(logits, mask_id).max(-1)  # [B, S]
        slot = confidence.masked_fill(filled, -torch.inf).argmax(-1)  # leftmost on ties
        live = rows[~done]
        ids[live, where[live, slot[live]]] = token[live, slot[live]]
        filled[live, slot[live]] = True
        done = finished()
    out = []
    for tokens in region().tolist():
        out.append(tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens)
    return out


def fill(loaded: LoadedModel, texts: list[str], max_words: int, batch_size: int = 64) -> list[str]:
    """Greedy completions of ``texts`` by mask filling (`fill_regions`), each cut to its first
    line and ``max_words`` words, starting with a space (the task convention)."""
    tok = loaded.tokenizer
    out: list[str] = []
    for start in range(0, len(texts), batch_size):
        visible = _visible_ids(tok, texts[start:start + batch_size])
        for tokens in fill_regions(loaded.model, visible, mask_slots(loaded), tok.mask_token_id,
                                   tok.eos_token_id, tok.pad_token_id):
            out.append(within_budget(tok.decode(tokens, skip_special_tokens=True), max_words))
    return out


# --------------------------------------------------------------------------- the adapter's scores


@torch.no_grad()
def token_scores(loaded: LoadedModel, task, examples: list[dict], batch_size: int = 64) -> list[dict]:
    """Per example, ``logp``: log p of each completion token scored as the module docstring
    says (its turn's visible text, the region's slots before it revealed, the rest masked),
    what `benchmark.evaluate.task_loss` averages."""
    tok, S = loaded.tokenizer, mask_slots(loaded)
    sequences: list[tuple[int, list[int], torch.Tensor, int, int]] = []  # example, visible, region, slot, target
    for e, (ex, enc) in enumerate(zip(examples, encode_examples(tok, examples, add_eos=False))):
        ids, end = enc["ids"], len(enc["ids"])
        for start in turn_starts(task, ex, enc["starts"]):
            for j in range(start, min(start + S, end)):  # completion tokens in this turn's region
                region = torch.full((S,), tok.mask_token_id, dtype=torch.long)
                region[: j - start] = torch.as_tensor(ids[start:j], dtype=torch.long)
                sequences.append((e, ids[:start], region, j - start, ids[j]))
    # A token inside two turns' regions is scored with the later turn (its own move's).
    last = {}
    for i, (e, visible, _, slot, _) in enumerate(sequences):
        last[(e, len(visible) + slot)] = i
    sequences = [sequences[i] for i in sorted(last.values())]
    logp = torch.empty(len(sequences), dtype=torch.float64)
    for s in range(0, len(sequences), batch_size):
        chunk = sequences[s:s + batch_size]
        ids, attn, where = layout([c[1] for c in chunk], torch.stack([c[2] for c in chunk]), tok.pad_token_id,
                                  loaded.device)
        logits, _ = region_logits(loaded.model, ids, attn, where)
        lp = prediction_logp(logits, tok.mask_token_id)
        rows = torch.arange(len(chunk))
        slots = torch.as_tensor([c[3] for c in chunk])
        targets = torch.as_tensor([c[4] for c in chunk], device=lp.device)
        logp[s:s + len(chunk)] = lp[rows, slots.to(lp.device), targets].double().cpu()
    by_example = np.array([c[0] for c in sequences], dtype=int)
    return [{"logp": logp[torch.as_tensor(np.flatnonzero(by_example == e))]} for e in range(len(examples))]


@torch.no_grad()
def states_at_tokens(loaded: LoadedModel, texts: list[str], token_positions: list[int], layers: list[int],
                     batch_size: int = 64) -> torch.Tensor:
    """States [len(layers), N, H] at one token of each text, the text followed by the region's
    S masks (what mask filling reads first)."""
    tok, S = loaded.tokenizer, mask_slots(loaded)
    out = []
    for start in range(0, len(texts), batch_size):
        visible = _visible_ids(tok, texts[start:start + batch_size])
        ids, attn, where = layout(visible, torch.full((len(visible), S), tok.mask_token_id), tok.pad_token_id,
                                  loaded.device)
        _, hidden = region_logits(loaded.model, ids, attn, where, output_hidden_states=True)
        rows = torch.arange(len(visible), device=ids.device)
        cols = torch.as_tensor(token_positions[start:start + len(visible)], device=ids.device)
        out.append(torch.stack([hidden[layer][rows, cols] for layer in layers]))
    return torch.cat(out, dim=1)


def hidden_states_at(loaded: LoadedModel, texts: list[str], char_offsets: list[int],
                     batch_size: int = 64) -> np.ndarray:
    """`benchmark.models.hidden_states_at` for a masked model: every layer's state [L+1, N, H]
    at the last token before each offset, with the text up to that token visible and S masks
    after it (the completion masked)."""
    tok = loaded.tokenizer
    kept, positions = [], []
    enc = tokenize(tok, texts, return_offsets_mapping=True)
    for text, offsets, offset in zip(texts, enc["offset_mapping"], char_offsets):
        at = token_index(torch.as_tensor(offsets), torch.ones(len(offsets)), offset)
        kept.append(text[: offsets[at][1]])  # word-level: the text of the tokens up to the decision
        positions.append(at)
    layers = list(range(loaded.n_layers + 1))
    return states_at_tokens(loaded, kept, positions, layers, batch_size).float().cpu().numpy()
