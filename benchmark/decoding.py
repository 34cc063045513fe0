"""Amplified decoding: generate from p_λ = (1 − λ)·p + λ·q, one token at a time.

At every step, p is the model's next-token distribution at the end of the text so far and q
the distribution of the first tokens of the W beams that a depth-D beam search finds from
there (`benchmark.amplify`: one `beam_search` gives both). The next token is the argmax of
p_λ (greedy) or a draw from it (sampling, optionally at a temperature). λ = 0 is plain
decoding from p; the seed's idea is that some λ keeps sampling's variety while the beams
steer it away from dead ends.

q is supported on the top W tokens of p, and at depth 1 it is p renormalised over them, so
sampling from p_λ at depth 1 is partly top-W truncation, which helps an underconfident model
without any lookahead. The evaluation therefore also decodes at depth 1 with the same W and
λ (`benchmark.evaluate.decoding_success`): what depth D adds beyond that is lookahead.

Sampling is deterministic: each prompt draws its uniforms from its own generator, seeded by
(seed, prompt text), so a completion does not depend on the batch it was decoded in, and
two decoders with the same seed share their random numbers (a paired comparison).

The prefix is recomputed at every step (no KV cache across steps): the beam search needs a
fresh forward from each new prefix anyway, and the texts are short (bench/bench_sample.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from benchmark.amplify import DEFAULT_DEPTH, DEFAULT_WIDTH, amplified_distribution, beam_search
from benchmark.models import LoadedModel, tokenize, within_budget, word_budget
from benchmark.safety import SubmissionError

# A stop reads the generated tokens of the active rows, [B, steps], and says which are done
# (a transformers StoppingCriteria fits: `models.word_budget` gives one).
Stop = Callable[[torch.Tensor, None], torch.Tensor]


@dataclass(frozen=True)
class Decoding:
    """How to pick each next token: from p_λ with a width-W, depth-D beam search, greedily or
    by sampling (at ``temperature``, with ``seed``). λ = 0 is plain decoding from p."""

    width: int = DEFAULT_WIDTH
    depth: int = DEFAULT_DEPTH
    lam: float = 0.0
    greedy: bool = False
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 1:
            raise ValueError(f"beam width and depth must be at least 1, got W={self.width}, D={self.depth}")
        if not 0 <= self.lam <= 1:
            raise ValueError(f"λ must be in [0, 1], got {self.lam}")
        if not self.temperature > 0:
            raise ValueError(f"the temperature must be positive, got {self.temperature}")

    @property
    def search(self) -> tuple[int, int]:
        """The (W, D) actually searched: λ = 0 needs only p, which one forward gives."""
        return (self.width, self.depth) if self.lam > 0 else (1, 1)


def row_generator(seed: int, key: str) -> torch.Generator:
    """The random stream of one prompt: seeded by (seed, key), whatever else is decoded."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def draw(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token from a distribution [V] by inverse CDF with one uniform of ``generator``."""
    cdf = probs.double().cumsum(0)
    u = torch.rand(1, generator=generator, dtype=torch.float64) * cdf[-1]
    return int(torch.searchsorted(cdf, u.to(cdf.device), right=True).clamp(max=len(cdf) - 1))


def next_tokens(model: torch.nn.Module, prefixes: Sequence[list[int]], decoding: Decoding,
                generators: Sequence[torch.Generator]) -> list[int]:
    """The next token of each prefix under ``decoding``."""
    width, depth = decoding.search
    probs = amplified_distribution(beam_search(model, prefixes, width, depth, batch_size=len(prefixes)),
                                   decoding.lam)
    if not torch.isfinite(probs).all():
        raise SubmissionError("the model returns NaN or infinite logits")
    if decoding.greedy:
        return probs.argmax(-1).tolist()  # ties go to the lower token id
    if decoding.temperature != 1:
        probs = probs.pow(1 / decoding.temperature)
    return [draw(row, g) for row, g in zip(probs, generators)]


@torch.no_grad()
def decode_tokens(model: torch.nn.Module, prompts: Sequence[list[int]], decoding: Decoding,
                  max_new_tokens: int, eos_id: int | None, keys: Sequence[str],
                  stop: Stop | None = None) -> list[list[int]]:
    """Continue each prompt (token ids) by up to ``max_new_tokens`` tokens under
    ``decoding``, batched; a row ends at ``eos_id`` (kept) or when ``stop`` says so.
    ``keys`` (one per prompt, e.g. its text) seed each row's random stream."""
    generators = [row_generator(decoding.seed, k) for k in keys]
    out: list[list[int]] = [[] for _ in prompts]
    active = list(range(len(prompts)))
    for _ in range(max_new_tokens):
        if not active:
            break
        chosen = next_tokens(model, [list(prompts[i]) + out[i] for i in active], decoding,
                             [generators[i] for i in active])
        for i, token in zip(active, chosen):
            out[i].append(token)
        # Every active row has generated the same number of tokens: one rectangular batch.
        done = stop(torch.tensor([out[i] for i in active]), None).tolist() if stop else [False] * len(active)
        active = [i for i, d in zip(active, done) if not d and out[i][-1] != eos_id]
    return out


def amplified_complete(loaded: LoadedModel, texts: list[str], max_words: int, decoding: Decoding,
                       batch_size: int = 64) -> list[str]:
    """Continue each text under ``decoding``: at most ``max_words`` words and one line, cut
    as the harness's greedy and beam continuations are (`models.within_budget`)."""
    tok = loaded.tokenizer
    results: list[str] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        prompts = tokenize(tok, chunk)["input_ids"]
        # The stop reads generated tokens only (column 0 on); the budget leaves the beams
        # of the last step room inside the model's context.
        max_new, stop = word_budget(loaded, max(map(len, prompts)) + decoding.search[1] - 1, max_words,
                                    stop_from=0)
        gen = decode_tokens(loaded.model, prompts, decoding, max_new, tok.eos_token_id, chunk, stop)
        results.extend(within_budget(t, max_words) for t in tok.batch_decode(gen, skip_special_tokens=True))
    return results


def solver(loaded: LoadedModel, max_words: int, decoding: Decoding, batch_size: int = 64):
    """The model side of a task's solver (`tasks.base.CompleteFn`) under ``decoding``."""
    return lambda texts: amplified_complete(loaded, texts, max_words, decoding, batch_size)
