"""What a task is: data plus a verifier. No torch here, so tasks load instantly.

An *example* is a plain dict (one row of a `datasets.Dataset`):

- ``id``: a stable identifier.
- ``prompt``: what the model is given.
- ``completion``: the reference continuation; training text is ``prompt + completion``.
- ``decisions``: points where lookahead is probed, each a dict
  ``{"name": str, "offset": int, "target": str, "horizon": int}``. ``offset`` is a
  character offset into ``prompt + completion``: the probe reads the hidden state of the
  last token that starts before it. ``target`` is the label of the future event and
  ``horizon`` how far ahead it lies (in words or moves).
- ``meta``: a JSON string with task-specific details (JSON keeps the column schema the
  same for every task). ``meta["group"]`` (a short string, e.g. "mate2" or "dead-end")
  is the breakdown the leaderboard reports success by.

Text convention for the reference models: tokens are separated by single spaces, so a
word-level tokenizer built from :meth:`Task.vocabulary` encodes every text exactly. The
prompt does not end with a space and the completion starts with one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from abc import ABC, abstractmethod
from typing import Callable, Iterable

# The model side of a solver: given a batch of texts, return each one's continuation
# (greedy or beam search, cut at the end-of-text token). Tasks never see a model.
CompleteFn = Callable[[list[str]], list[str]]

SPLITS = ("train", "dev", "test")


def cache_dir() -> Path:
    """Where slow-to-generate data is cached ($MESABENCH_CACHE, default ~/.cache/mesabench)."""
    path = Path(os.environ.get("MESABENCH_CACHE", Path.home() / ".cache" / "mesabench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def split_of(key: str) -> str:
    """Assign an item to a split by a hash of its content key.

    Splitting by content (not by generation order) guarantees that no prompt appears in
    two splits, whatever the seed: 80% train, 10% dev, 10% test.
    """
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 8 else ("dev" if bucket == 8 else "test")


def make_example(
    id: str, prompt: str, completion: str, decisions: list[dict], meta: dict | None = None
) -> dict:
    """Build an example dict, checking the offsets and the text convention."""
    text = prompt + completion
    if not completion.startswith(" ") or prompt.endswith(" "):
        raise ValueError(f"{id}: completion must start with one space, prompt must not end with one")
    for d in decisions:
        if not 0 < d["offset"] <= len(text):
            raise ValueError(f"{id}: decision offset {d['offset']} outside the text")
    clean = [
        {"name": str(d["name"]), "offset": int(d["offset"]), "target": str(d["target"]),
         "horizon": int(d["horizon"])}
        for d in decisions
    ]
    return {"id": id, "prompt": prompt, "completion": completion, "decisions": clean,
            "meta": json.dumps(meta or {}, sort_keys=True)}


def words(text: str) -> list[str]:
    """Lower-case alphabetic words of a text (apostrophes kept), ignoring punctuation."""
    out = []
    for raw in text.lower().split():
        w = "".join(ch for ch in raw if ch.isalpha() or ch == "'").strip("'")
        if w:
            out.append(w)
    return out


class Task(ABC):
    """A task family: a deterministic generator, a verifier and the targets it probes.

    Subclasses set the class attributes and implement the abstract methods; everything
    else has a default that fits a single-turn task.
    """

    name: str = ""
    version: str = "1"
    description: str = ""
    # Names of the decision targets this task produces (e.g. ("rhyme_word",)).
    target_names: tuple[str, ...] = ()
    # Generation budget for one model turn, in tokens of a word-level tokenizer.
    max_new_tokens: int = 16
    # Default sizes: (train, eval) examples, for the full and the quick run.
    sizes: dict[str, tuple[int, int]] = {"full": (20000, 600), "quick": (2000, 100)}
    # The dev split trains the probes and picks λ; it has this many times the test split's
    # examples. With ~4 rows per class (600 rows, 150 rhyme words) a probe is starved:
    # measured on rhymes, own-target probe accuracy 0.67 with 500 train rows, 0.80 with 2,000.
    dev_factor: int = 3
    # True when generate() caches its output on disk (a slow generator): the runner then
    # generates once, before worker processes start, so the workers only read the cache.
    # Fast generators are left to each worker (pre-generating them would be thrown away).
    disk_cached: bool = False

    # Further splits scored for success only (chess: "real" Lichess puzzles).
    extra_success_splits: tuple[str, ...] = ()

    @abstractmethod
    def generate(self, split: str, n: int, seed: int):
        """Return a `datasets.Dataset` of ``n`` examples of ``split``, deterministic for ``seed``."""

    @abstractmethod
    def check(self, example: dict, completion: str) -> bool:
        """The verifier: does ``completion`` (what a model produced) solve ``example``?

        Must never raise on arbitrary model output: unknown words, punctuation, case, empty
        strings all give False rather than an exception.
        """

    @abstractmethod
    def vocabulary(self) -> list[str]:
        """Every space-separated token that this task's texts can contain."""

    @abstractmethod
    def target_from_completion(self, example: dict, completion: str, name: str) -> str | None:
        """The label of target ``name`` in a model's completion (None if it has none).

        Used to probe for what the model itself will produce, beside the reference target.
        """

    def play(self, examples: list[dict], complete: CompleteFn) -> list[str]:
        """The solver: let a model answer each example; return the completions to check.

        Single-turn by default. Interactive tasks (chess: the harness answers each move)
        override this and call ``complete`` once per turn, batched over examples.
        """
        return complete([ex["prompt"] for ex in examples])


    def baseline_solvers(self, seed: int) -> dict[str, CompleteFn]:
        """Model-free solvers whose success the leaderboard shows beside models
        (chess: a random legal move). None by default."""
        return {}
