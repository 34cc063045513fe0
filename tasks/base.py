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
  same for every task); read it with :meth:`Task.meta`. ``meta["group"]`` (a short
  string, e.g. "mate2" or "dead-end") is the breakdown the leaderboard reports by
  (:meth:`Task.group`).

The harness asks a task only what :class:`Task` declares (no ``getattr`` probing), and
this package imports nothing from ``benchmark``: a task is data and a verifier.

Text convention for the reference models: tokens are separated by single spaces, so a
word-level tokenizer built from :meth:`Task.vocabulary` encodes every text exactly. The
prompt does not end with a space and the completion starts with one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# The model side of a solver: given a batch of texts, return each one's continuation
# (greedy or beam search, cut at the end-of-text token). Tasks never see a model.
CompleteFn = Callable[[list[str]], list[str]]

SPLITS = ("train", "dev", "test")


class TaskError(Exception):
    """A task cannot do what it was asked (e.g. read a file); the message is one line."""


@dataclass
class CheckReport:
    """What a check of task data found: how many items it verified, and why others failed."""

    unit: str  # what the items are, for "N of M <unit> verified"
    total: int = 0
    verified: int = 0
    by_group: dict[str, list[int]] = field(default_factory=dict)  # group -> [verified, total]
    failures: list[str] = field(default_factory=list)  # "ITEM: reason", one per failed item

    @property
    def ok(self) -> bool:
        """True when there was something to check and all of it verified."""
        return self.total > 0 and self.verified == self.total

    def add(self, group: str, passed: bool, failure: str = "") -> None:
        """Count one item of ``group``; a failed one is listed with ``failure``."""
        counts = self.by_group.setdefault(group, [0, 0])
        self.total += 1
        counts[1] += 1
        if passed:
            self.verified += 1
            counts[0] += 1
        else:
            self.failures.append(failure)


def usable_cores() -> int:
    """CPU cores this process may use: the default size of a process pool (the harness's
    workers, a slow generator's helpers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
    # The word-level convention: the completion starts with one space. Natural text after a
    # line break has none: a prompt that ends with "\n" takes a completion that starts with
    # its first character.
    spaced = completion.startswith(" ") and not prompt.endswith((" ", "\n"))
    after_break = prompt.endswith("\n") and completion[:1].strip() != ""
    if not (spaced or after_break):
        raise ValueError(f"{id}: completion must start with one space (or, after a prompt that ends "
                         "with a line break, with no space); the prompt must not end with a space")
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
    # "word": the word-level face the reference models train on; "natural": plain text for
    # pretrained models (few-shot), which no reference trains on or is scored on.
    face: str = "word"
    # Names of the decision targets this task produces (e.g. ("rhyme_word",)).
    target_names: tuple[str, ...] = ()
    # Generation budget for one model turn, in words (a move is three: from, to, promotion);
    # `benchmark.models.generate_words` turns it into tokens of any tokenizer.
    max_words: int = 16
    # Default sizes: (train, eval) examples, for the full and the quick run.
    sizes: dict[str, tuple[int, int]] = {"full": (20000, 600), "quick": (2000, 100), "long": (20000, 600)}
    # The dev split trains the probes and picks λ; it has this many times the test split's
    # examples. With ~4 rows per class (600 rows, 150 rhyme words) a probe is starved:
    # measured on rhymes, own-target probe accuracy 0.67 with 500 train rows, 0.80 with 2,000.
    dev_factor: int = 3
    # True when generate() caches its output on disk (a slow generator): the harness then
    # generates once, before worker processes start, so the workers only read the cache.
    # Fast generators are left to each worker (pre-generating them would be thrown away).
    disk_cached: bool = False
    # Further splits scored for success only (chess: "real" Lichess puzzles).
    extra_success_splits: tuple[str, ...] = ()
    # About how many word-level tokens an example's prompt + completion has. With `sizes`
    # it estimates what training on the task costs, so the longest jobs start first.
    example_tokens: int = 16

    @property
    def data_version(self) -> str:
        """The version of the generated data (it names disk caches). The task's version,
        unless a task changes how it scores without changing its data (chess)."""
        return self.version

    @staticmethod
    def meta(example: dict) -> dict:
        """An example's ``meta`` as a dict (stored as a JSON string; a dict is copied)."""
        meta = example["meta"]
        return json.loads(meta) if isinstance(meta, str) else dict(meta)

    def group(self, example: dict) -> str:
        """The breakdown an example is reported in: ``meta["group"]``, else "all"."""
        return str(self.meta(example).get("group", "all"))

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

    def first_step(self, completion: str, example: dict | None = None) -> str | None:
        """The first unit a completion of ``example`` commits to, as one string (None if it
        has none): its first word by default. The causal check holds it fixed and compares
        it with the plan, and the next-step probe control reads it, so it is written as the
        targets are. Chess overrides it: its unit is a move, in UCI."""
        parts = completion.split()
        return parts[0] if parts else None

    def in_first_step(self, plan: str | None, step: str | None) -> bool:
        """Whether a completion's first step (`first_step`) already decides ``plan``, a
        target read from it: the causal check then has nothing beyond that step to follow.
        Default: the plan is the step itself."""
        return plan == step

    def control_offset(self, example: dict, decision: dict) -> int:
        """A character offset before ``decision`` whose token holds nothing the plan depends
        on: the causal check patches there too, as its control. Default: the end of the
        prompt's first word (tasks with a constant first word make this a no-op patch, which
        reads 0 by construction; override where a better position exists)."""
        first = re.match(r"\s*\S+", example["prompt"])
        return min(first.end() if first else 1, decision["offset"])

    def plan_spans(self, example: dict) -> list[tuple[int, int]]:
        """Character spans of ``prompt + completion`` whose words the plan decides: where the
        amplification "gain at decisions" is scored (the prediction right after a decision
        point is often fixed text, e.g. rhymes' "and", and then shows no plan at all).

        Default: for each decision, the completion's words from the decision point up to the
        target's first whole-word occurrence (the words a model that holds the target can
        predict better), or the target word itself when it comes first (chess mate in 1).
        A decision whose target is not a word of the completion adds no span.
        """
        text = example["prompt"] + example["completion"]
        spans = []
        for d in example["decisions"]:
            start = d["offset"]
            for match in re.finditer(r"\S+", text[start:]):
                # Natural text writes "River." where the target is "river".
                if match.group() != d["target"] and words(match.group()) != [d["target"]]:
                    continue
                word_start, word_end = start + match.start(), start + match.end()
                before = text[start:word_start].strip()
                spans.append((start, word_start) if before else (word_start, word_end))
                break
        return spans

    def baseline_solvers(self, seed: int) -> dict[str, CompleteFn]:
        """Model-free solvers whose success the leaderboard shows beside models
        (chess: a random legal move). None by default."""
        return {}

    def check_generated(self, n: int, seed: int = 0) -> CheckReport:
        """Verify the reference completion of ``n`` generated dev and ``n`` test examples."""
        report = CheckReport("reference completions")
        for split in ("dev", "test"):
            for ex in self.generate(split, n, seed):
                report.add(self.group(ex), self.check(ex, ex["completion"]),
                           f"{ex['id']}: reference completion fails the verifier")
        return report

    def with_real_file(self, path: Path) -> "Task":
        """This task with the items of ``path`` as its "real" split (a file in the format
        `check_file` reads). Most tasks read no files."""
        raise TaskError(f"task {self.name} does not read files")

    def check_file(self, path: Path) -> CheckReport:
        """Verify every item of a data file in a format this task reads (chess: Lichess
        puzzles). Most tasks read no files."""
        raise TaskError(f"task {self.name} does not read files")
