"""The causal follow rate: does the model *use* the plan a probe can decode?

A probe shows that a future target is decodable from the state at a decision point. The
follow rate asks whether that state drives the output: take the decision-point state of a
*donor* example whose plan differs, write it into a *recipient* example's residual stream
at its decision point (one layer), let the model play the recipient greedily (all turns of
an interactive task such as chess, the patch held at each), and count how often the
completion's target is the donor's plan.

- `patched(model, layer, positions, vectors)`: a context manager (in the style of
  TransformerLens ``hooks()``) that replaces the residual stream of any Hugging Face
  causal LM at one token per batch row. Layer indexing is ``output_hidden_states``'s:
  0 is the input of the first block (the embedding output), l is the output of block l-1,
  and the last layer is the model's final hidden state (after the final norm where the
  architecture has one), so a state read with ``output_hidden_states`` and written back
  is an exact no-op.
- `greedy(loaded, prompts, max_words, patch=...)`: greedy completions, optionally
  with a patch on the prompt's forward pass (the KV cache carries it to later tokens);
  `played` runs ``task.play`` on it, re-applying the patch at every turn.
- `follow_rate(loaded, task, examples, ...)`: the metric, per layer, at the decision point
  and at a control position that holds no plan, with Wilson intervals; `best_layer` picks
  the layer with the highest follow rate.

No file I/O and no printing here, like the other metric modules.
"""

from __future__ import annotations

import contextlib
import operator
import random
from typing import Iterator, Sequence

import torch

from benchmark.models import LoadedModel, encode, generate_words, token_index, tokenize
from benchmark.stats import wilson_interval


# ---------------------------------------------------------------------------------------
# Finding the decoder blocks of any causal LM
# ---------------------------------------------------------------------------------------


def n_hidden_layers(model: torch.nn.Module) -> int:
    """The number of decoder blocks (``config.num_hidden_layers``, text config first)."""
    cfg = model.config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return int(cfg.num_hidden_layers)


def decoder_blocks(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.ModuleList]:
    """(base model, its decoder blocks): the first ``nn.ModuleList`` whose length is the
    number of hidden layers, and the module that holds it (GPT-2 ``transformer.h``, Llama
    and Qwen2 ``model.layers``, GPT-NeoX ``gpt_neox.layers``).

    Searching by length instead of by attribute name keeps this architecture-agnostic.
    """
    n = n_hidden_layers(model)
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            parent = modules[name.rpartition(".")[0]] if "." in name else model
            return parent, module
    raise ValueError(f"{type(model).__name__}: no ModuleList of {n} decoder blocks found")


def _past_length(kwargs: dict) -> int:
    """Tokens already in the KV cache passed to a forward call (0 without a cache).

    transformers 5 names the argument ``cache``, 4.x ``past_key_values``; legacy caches are
    tuples of (key, value) per layer with the sequence on dim -2.
    """
    for key in ("cache", "past_key_values"):
        cache = kwargs.get(key)
        if cache is None:
            continue
        if hasattr(cache, "get_seq_length"):
            return int(cache.get_seq_length())
        if isinstance(cache, (tuple, list)) and cache and cache[0] is not None:
            return int(cache[0][0].shape[-2])
    return 0


# ---------------------------------------------------------------------------------------
# The hook context manager
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def patched(
    model: torch.nn.Module,
    layer: int,
    position_per_row: Sequence[int] | torch.Tensor,
    replacement_vectors: torch.Tensor,
) -> Iterator[None]:
    """Within the block, replace the residual stream at ``layer`` (``output_hidden_states``
    indexing) at one token position per batch row with ``replacement_vectors`` [B, H].

    Positions are absolute indices into the (padded) input, so with left padding they are
    given in padded coordinates. A forward pass patches a row only when its position lies
    inside that pass's input: with a KV cache the prompt pass is patched and the later
    one-token steps, whose keys and values already carry the patch, are not. A position of
    -1 leaves its row alone. Hooks are removed on exit, also on an exception.
    """
    base, blocks = decoder_blocks(model)
    n = len(blocks)
    if not 0 <= layer <= n:
        raise ValueError(f"layer {layer} outside 0..{n}")
    positions = torch.as_tensor(list(position_per_row) if not torch.is_tensor(position_per_row)
                                else position_per_row, dtype=torch.long).cpu()
    vectors = replacement_vectors.detach()
    if vectors.ndim != 2 or vectors.shape[0] != len(positions):
        raise ValueError(f"need one vector per row: {tuple(vectors.shape)} for {len(positions)} rows")
    state = {"past": 0}

    def patch(hidden: torch.Tensor) -> torch.Tensor:
        batch, length = hidden.shape[0], hidden.shape[1]
        if batch != len(positions):
            raise ValueError(f"patch has {len(positions)} rows, the forward pass {batch} "
                             "(beam search or a different batch?)")
        local = positions - state["past"]
        rows = torch.nonzero((positions >= 0) & (local >= 0) & (local < length)).flatten()
        if len(rows) == 0:
            return hidden
        # Out of place: the original tensor may be referenced elsewhere (e.g. collected
        # hidden states, the residual of the next block).
        hidden = hidden.clone()
        hidden[rows.to(hidden.device), local[rows].to(hidden.device)] = vectors[rows].to(
            device=hidden.device, dtype=hidden.dtype)
        return hidden

    def note_past(_module, _args, kwargs):
        state["past"] = _past_length(kwargs)

    def patch_block_input(_module, args, kwargs):
        if args:
            return (patch(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": patch(kwargs["hidden_states"])}

    def patch_block_output(_module, _args, output):
        if torch.is_tensor(output):
            return patch(output)
        return (patch(output[0]), *output[1:])

    def patch_final(_module, _args, output):
        if isinstance(output, tuple):
            return (patch(output[0]), *output[1:])
        old = output["last_hidden_state"]
        new = patch(old)
        output["last_hidden_state"] = new
        # transformers ties hidden_states[-1] to last_hidden_state: keep them in step.
        hs = output.get("hidden_states")
        if hs is not None and len(hs) and hs[-1] is old:
            output["hidden_states"] = (*hs[:-1], new)
        return output

    handles = [base.register_forward_pre_hook(note_past, with_kwargs=True)]
    try:
        if layer == 0:
            handles.append(blocks[0].register_forward_pre_hook(patch_block_input, with_kwargs=True))
        elif layer < n:
            # prepend: run before transformers' own output-capturing hook, so that
            # output_hidden_states reports the patched state.
            handles.append(blocks[layer - 1].register_forward_hook(patch_block_output, prepend=True))
        else:
            handles.append(base.register_forward_hook(patch_final, prepend=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------------------------------
# Greedy completion with an optional patch
# ---------------------------------------------------------------------------------------


def _token_positions(tokenizer, prompt: str, char_offset: int, control: str | int,
                     control_char: int | None = None) -> tuple[int, int]:
    """(decision token, control token) as indices into the unpadded prompt's tokens;
    ``control="task"`` takes the token before character ``control_char``."""
    enc = tokenize(tokenizer, [prompt], return_tensors="pt", return_offsets_mapping=True)
    offsets, mask = enc["offset_mapping"][0], enc["attention_mask"][0]
    decision = token_index(offsets, mask, char_offset)
    if control == "task":
        ctrl = min(token_index(offsets, mask, control_char), decision)
    elif control == "first":
        ctrl = 0
    elif control == "previous":
        ctrl = max(decision - 1, 0)
    elif isinstance(control, int):
        ctrl = min(control, decision)
    else:
        raise ValueError(f"control_position must be 'task', 'first', 'previous' or an int, not {control!r}")
    return decision, ctrl


@torch.no_grad()
def greedy(
    loaded: LoadedModel,
    prompts: list[str],
    max_words: int,
    layer: int | None = None,
    token_positions: Sequence[int] | None = None,
    vectors: torch.Tensor | None = None,
    batch_size: int = 64,
) -> list[str]:
    """Greedy completions of ``prompts`` (as `benchmark.models.complete`); with ``layer``,
    row i's state at its unpadded token ``token_positions[i]`` is replaced by
    ``vectors[i]`` on the prompt pass (left padding: the position is shifted by the row's
    padding here, so callers give unpadded token indices). A masked model fills its masks
    (`benchmark.masked.fill`, right padding) with the patch held in every pass."""
    tok = loaded.tokenizer
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        if loaded.masked:
            from benchmark.masked import fill

            with contextlib.nullcontext() if layer is None else patched(
                    loaded.model, layer, token_positions[start:start + len(chunk)], vectors[start:start + len(chunk)]):
                out.extend(fill(loaded, chunk, max_words, batch_size=len(chunk)))
            continue
        ids, mask, _ = encode(tok, chunk, loaded.device, padding_side="left")
        ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
        if layer is not None:
            pad = (mask.shape[1] - mask.sum(dim=1)).cpu()
            pos = torch.as_tensor(token_positions[start:start + len(chunk)]) + pad
            ctx = patched(loaded.model, layer, pos, vectors[start:start + len(chunk)])
        with ctx:
            out.extend(generate_words(loaded, ids, mask, max_words))
    return out


@torch.no_grad()
def states_at_tokens(
    loaded: LoadedModel, prompts: list[str], token_positions: Sequence[int], layers: list[int],
    batch_size: int = 64,
) -> torch.Tensor:
    """States [len(layers), N, H] at one unpadded token index per prompt (right padding,
    so positions need no shift and real tokens do not see the padding); a masked model's
    with the region's masks after the prompt (`benchmark.masked.states_at_tokens`)."""
    if loaded.masked:
        from benchmark import masked

        return masked.states_at_tokens(loaded, prompts, list(token_positions), layers, batch_size)
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        ids, mask, _ = encode(loaded.tokenizer, chunk, loaded.device)
        hs = loaded.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        rows = torch.arange(len(chunk))
        cols = torch.as_tensor(token_positions[start:start + len(chunk)])
        out.append(torch.stack([hs[l][rows, cols] for l in layers]))
    return torch.cat(out, dim=1)


# ---------------------------------------------------------------------------------------
# The follow rate
# ---------------------------------------------------------------------------------------


def _rate(k: int, n: int) -> dict:
    lo, hi = wilson_interval(k, n)
    return {"k": int(k), "n": int(n), "rate": (k / n) if n else None, "lo": lo, "hi": hi}


def _pairs(items: list[dict], n_pairs: int, seed: int) -> list[tuple[int, int]]:
    """Up to ``n_pairs`` distinct (recipient, donor) index pairs with the same decision
    name and different reference targets, drawn deterministically for ``seed``."""
    rng = random.Random(seed)
    donors_of = []
    for i, it in enumerate(items):
        donors_of.append([j for j, other in enumerate(items) if other["name"] == it["name"]
                          and other["target"] != it["target"]])
    recipients = [i for i, d in enumerate(donors_of) if d]
    possible = sum(len(donors_of[i]) for i in recipients)
    chosen: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    while len(chosen) < min(n_pairs, possible):
        # Cycle through shuffled recipients so each example is used about equally often.
        order = recipients[:]
        rng.shuffle(order)
        for r in order:
            if len(chosen) >= min(n_pairs, possible):
                break
            free = [d for d in donors_of[r] if (r, d) not in seen]
            if free:
                d = rng.choice(free)
                seen.add((r, d))
                chosen.append((r, d))
    return chosen


def _score(pairs, own, first, patched_targets, patched_first, reference, in_first_step=operator.eq) -> dict:
    """Rates for one (layer, position): see `follow_rate`.

    A follow counts only when the recipient's first emitted word (the task's first step,
    `Task.first_step`: for chess a whole move, two or three words) is the one it emits
    unpatched: a patch at the last layer sets the next token directly, and a completion that
    merely cascades from a changed first word (a random model repeating it) is not a plan
    read from the patched state. For the same reason a pair is informative only when the
    plans are not decided by the completions' first steps (``in_first_step(plan, step)``,
    default equality; a mate in 1 has nothing beyond its next move, and a mating square is
    decided by the move that lands on it).
    """
    informative = [(i, r, d) for i, (r, d) in enumerate(pairs)
                   if own[d] is not None and own[d] != own[r]
                   and not in_first_step(own[r], first[r]) and not in_first_step(own[d], first[d])]
    steady = [patched_first[i] == first[r] for i, (r, _) in enumerate(pairs)]
    k_follow = sum(steady[i] and patched_targets[i] == own[d] for i, r, d in informative)
    k_keep = sum(patched_targets[i] == own[r] for i, r, d in informative)
    n = len(pairs)
    k_all = sum(own[d] is not None and patched_targets[i] == own[d] for i, (r, d) in enumerate(pairs))
    k_base = sum(own[d] is not None and own[r] == own[d] for r, d in pairs)
    k_ref = sum(patched_targets[i] == reference[d] for i, (r, d) in enumerate(pairs))
    k_base_ref = sum(own[r] == reference[d] for r, d in pairs)
    return {
        "follow": _rate(k_follow, len(informative)),
        "keep": _rate(k_keep, len(informative)),
        "first_word_kept": _rate(sum(steady), n),
        "follow_all": _rate(k_all, n),
        "base": _rate(k_base, n),
        "follow_reference": _rate(k_ref, n),
        "base_reference": _rate(k_base_ref, n),
    }


def _by_occurrence(keys: Sequence[str]) -> list[list[int]]:
    """Indices grouped so that no group holds a key twice: the k-th occurrence of each key
    goes to group k (a turn's text is matched to its row by its prompt, so the rows played
    together must have distinct prompts)."""
    groups: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        k = seen.get(key, 0)
        seen[key] = k + 1
        if k == len(groups):
            groups.append([])
        groups[k].append(i)
    return groups


def _row_of(text: str, prompt_rows: dict[str, int], lengths: list[int]) -> int:
    """The row whose prompt is the longest prefix of ``text``."""
    for n in lengths:  # longest first
        row = prompt_rows.get(text[:n])
        if row is not None:
            return row
    raise ValueError("a turn's text starts with none of the prompts played")


def played(loaded: LoadedModel, task, examples: list[dict], batch_size: int = 64,
           layer: int | None = None, token_of=None, vectors: torch.Tensor | None = None) -> list[str]:
    """Greedy ``task.play`` of ``examples``: one completion each, except that interactive
    tasks take several turns (chess: the harness answers each attacker move, so a mate in
    2 reaches its mating move). With ``layer``, every forward pass over row i's text has
    the state at token ``token_of(i, text)`` replaced by ``vectors[i]``. The patch is
    re-applied at each turn because each turn is a fresh pass over the prompt and the
    moves so far: the intervention is "the decision state is the donor's", all game long.
    The prompts must be distinct when patching (`_by_occurrence` groups rows so)."""
    if layer is None:
        return task.play(examples, lambda texts: greedy(loaded, list(texts), task.max_words,
                                                        batch_size=batch_size))
    prompt_rows = {ex["prompt"]: i for i, ex in enumerate(examples)}
    if len(prompt_rows) != len(examples):
        raise ValueError("patched play needs distinct prompts")
    lengths = sorted({len(p) for p in prompt_rows}, reverse=True)

    def complete(texts: Sequence[str]) -> list[str]:
        texts = list(texts)
        rows = [_row_of(t, prompt_rows, lengths) for t in texts]
        return greedy(loaded, texts, task.max_words, layer=layer,
                      token_positions=[token_of(r, t) for r, t in zip(rows, texts)],
                      vectors=vectors[torch.as_tensor(rows)], batch_size=batch_size)

    return task.play(examples, complete)


def follow_rate(
    loaded: LoadedModel,
    task,
    examples: list[dict],
    layers: list[int] | None = None,
    n_pairs: int = 200,
    seed: int = 0,
    control_position: str | int = "first",
    batch_size: int = 64,
) -> dict:
    """The causal follow rate per layer (JSON-friendly).

    Pairs (recipient, donor) share a decision name and differ in reference target. The
    donor's *plan* is its own unpatched greedy completion's target. At each layer the
    donor's state at its decision token is written into the recipient's decision token,
    the recipient is played greedily (`played`: ``task.play``, so chess takes all its
    turns, the patch held at each) and its target read with
    ``task.target_from_completion``. Per layer, at ``"decision"`` and at the
    ``"control"`` token (``"task"``: the task's `control_offset`, a prompt token that holds
    nothing the plan depends on; ``"first"`` prompt token, ``"previous"`` token, or an int
    token index; the donor's state at the same token), each a rate dict ``{k, n, rate, lo, hi}``
    with a Wilson 95% interval:

    - ``follow``: patched target == donor's plan and the recipient's first step unchanged,
      over the pairs whose plans differ (the donor has a plan and it is not the
      recipient's own) and lie beyond the first step: the headline, base rate 0 by
      construction (see `_score` for why the first step must stay).
    - ``first_word_kept``: over all pairs, the patched first step is the unpatched one.
    - ``keep``: over the same pairs, the patched recipient still ends on its own plan.
    - ``follow_all`` and ``base``: over all pairs, patched (resp. unpatched) recipient ends
      on the donor's plan; ``base`` is what chance and shared attractors give.
    - ``follow_reference`` and ``base_reference``: the same against the donor's reference
      target.

    Decisions must lie inside the prompt (offset <= len(prompt)); others are skipped and
    counted in ``skipped_decisions``. Pass ``benchmark.models.random_init_like(loaded, 0)``
    as ``loaded`` for the random-init control.
    """
    n_layers = n_hidden_layers(loaded.model)
    layers = list(range(n_layers + 1)) if layers is None else [int(l) for l in layers]
    tok = loaded.tokenizer
    items, skipped = [], 0
    for e, ex in enumerate(examples):
        for d in ex["decisions"]:
            if d["offset"] > len(ex["prompt"]):
                skipped += 1
                continue
            control_char = task.control_offset(ex, d) if control_position == "task" else None
            dec, ctrl = _token_positions(tok, ex["prompt"], d["offset"], control_position, control_char)
            items.append({"example": e, "name": d["name"], "target": d["target"], "offset": d["offset"],
                          "control_char": control_char, "decision": dec, "control": ctrl})
    pairs = _pairs(items, n_pairs, seed)
    result = {"layers": layers, "n_pairs": len(pairs), "seed": seed,
              "control_position": control_position, "skipped_decisions": skipped,
              "max_words": int(task.max_words), "per_layer": []}
    if not pairs:
        return result

    def targets(completions: list[str], idx: list[int]) -> list[str | None]:
        return [task.target_from_completion(examples[items[i]["example"]], c, items[i]["name"])
                for c, i in zip(completions, idx)]

    # Unpatched plans of every item that takes part (an example is played once).
    used = sorted({i for p in pairs for i in p})
    example_of = {i: examples[items[i]["example"]] for i in used}
    unique = sorted({items[i]["example"] for i in used})
    plain = dict(zip(unique, played(loaded, task, [examples[e] for e in unique], batch_size)))
    own = {i: t for i, t in zip(used, targets([plain[items[i]["example"]] for i in used], used))}
    first = {i: task.first_step(plain[items[i]["example"]], example_of[i]) for i in used}
    reference = {i: items[i]["target"] for i in used}

    recipients = [r for r, _ in pairs]
    donors = [d for _, d in pairs]
    donor_prompts = [example_of[d]["prompt"] for d in donors]
    groups = _by_occurrence([example_of[r]["prompt"] for r in recipients])
    for where in ("decision", "control"):
        donor_states = states_at_tokens(loaded, donor_prompts, [items[d][where] for d in donors],
                                        layers, batch_size)

        def token_of(group: list[int]):
            # The recipient's decision (or control) token in this turn's text: found again
            # in each text, since a subword tokenizer may split the prompt's end otherwise
            # once moves follow it.
            def at(row: int, text: str) -> int:
                item = items[recipients[group[row]]]
                return _token_positions(tok, text, item["offset"], control_position,
                                        item["control_char"])[0 if where == "decision" else 1]
            return at

        for li, layer in enumerate(layers):
            if where == "decision":
                result["per_layer"].append({"layer": layer})
            comps: list[str] = [""] * len(pairs)
            for group in groups:
                out = played(loaded, task, [example_of[recipients[i]] for i in group], batch_size,
                             layer=layer, token_of=token_of(group), vectors=donor_states[li][group])
                for i, c in zip(group, out):
                    comps[i] = c
            result["per_layer"][li][where] = _score(pairs, own, first, targets(comps, recipients),
                                                    [task.first_step(c, example_of[r]) for c, r in zip(comps, recipients)],
                                                    reference, task.in_first_step)
    result["own_plan_defined"] = _rate(sum(own[i] is not None for i in used), len(used))
    return result


def best_layer(result: dict, where: str = "decision", metric: str = "follow") -> dict | None:
    """The layer with the highest ``metric`` rate at ``where`` (lowest layer on ties), with
    its rate dict; None when no layer has a defined rate. The choice is made on the same
    pairs it reports, so across many layers the point value is biased upward (read the
    interval, or pick the layer on other pairs)."""
    best = None
    for row in result.get("per_layer", []):
        r = row[where][metric]
        if r["rate"] is not None and (best is None or r["rate"] > best["rate"]):
            best = {"layer": row["layer"], **r}
    return best
