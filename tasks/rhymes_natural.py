"""Rhymes, natural face: English couplets that a pretrained model can take, few-shot.

The word-level rhymes task (tasks/rhymes.py) is the references' face; a GPT-2, Pythia or
Llama has never seen "couplet : ... /". This face asks the same question in plain text:
an instruction, k example couplets, then line 1 and a line break; the model writes line 2.

    Complete each couplet with a second line that rhymes with the first.

    The fisherman crossed the deep bay,
    A farmer watered a dry hay.

    She quietly tasted a ripe pear,
    ^ prompt ends here, after the line break (the decision point)
    A baker carried the big chair.        <- the reference completion (line 2)

- **Generated couplets** come from the constrained task's sentence grammar (real English
  word order, ~750 common words): line 1 ends on a noun that has rhyming nouns in the
  lexicon, line 2 on one of them. Splits by a hash of line 1.
- **Real couplets** ("real" split) are read from JSONL files of ``line1``/``line2``
  (``rhyme1``/``rhyme2`` optional), like the shipped ``data/real_couplets_dev.jsonl``: 289
  couplets of published poems and songs. Every one is scored; `check_file` validates a file.
- **Few-shot**: each item's k exemplars (`FEWSHOT`, default 1) are drawn, by the item's id,
  from a pool of generated *train* couplets (never scored), leaving out any exemplar whose
  rhyme family is the item's (it would hand over a rhyming word to copy).
- **Verifier**: the completion's first line has at least two words and ends on a word that
  rhymes with line 1's last word by the CMU Pronouncing Dictionary and is not that word.
  Case and punctuation are ignored (`tasks.base.words`).
- **Decision**, at the line break (offset = len(prompt)): ``rhyme_word``, the word ending
  line 2 (the reference's; the model's own from its completion), and ``rhyme_family``, its
  rhyme part (the CMU phones from the last stressed vowel), the family a plan must hold.

The prompt ends with the line break, so the completion is line 2 as written, with no
leading space (the one face that breaks the word-level faces' space convention: natural
text has no space after a newline). No reference model is trained on this face: its
vocabulary is empty and the reference submissions do not list it.
"""

from __future__ import annotations

import functools
import json
import random
import re
from pathlib import Path

from tasks.base import CheckReport, CompleteFn, Task, TaskError, make_example, split_of, words
from tasks.pronounce import rhyme_parts, rhymes_with

VERSION = "2"  # 2: one exemplar (was 3), and a bag-of-words baseline
# Exemplars before each item, chosen by measurement on the pretrained stand-in
# (benchmark/standin.py, two 3,500-step models, seeds 0 / 1; greedy success on 300 dev items of v1):
# k=0 86.3 / 83.7%, k=1 82.3 / 80.3%, k=2 76.0 / 73.7%, k=3 71.0 / 69.7%, k=5 51.7 / 39.3%
# (intervals in docs/experiments/standin_budget.py). Every exemplar costs the small model
# success, but the stand-in was trained on this format and needs none: a model that never
# saw it learns the layout (couplet, line break, blank line) only from an exemplar, so the
# default is the fewest that shows it once.
FEWSHOT = 1
POOL = 300  # generated train couplets the exemplars are drawn from
INSTRUCTION = "Complete each couplet with a second line that rhymes with the first."
REAL_COUPLETS = Path(__file__).parent / "data" / "real_couplets_dev.jsonl"
MAX_WORDS = 16  # the budget for line 2; the line break ends it sooner


def family(word: str) -> str | None:
    """A word's rhyme family: its first CMU rhyming part in sorted order (None if unknown)."""
    parts = sorted(rhyme_parts(word.lower()))
    return parts[0] if parts else None


@functools.lru_cache(maxsize=1)
def _rhyming_nouns() -> dict[str, tuple[str, ...]]:
    """Noun -> the other nouns of the lexicon that rhyme with it (nouns with none left out)."""
    from tasks.constrained import nouns, rhyme_partners

    partners = rhyme_partners()
    return {n: partners[n] for n in nouns() if partners.get(n)}


def _line(rng: random.Random, noun: str, end: str) -> str:
    """A grammar sentence ending on ``noun``, as English writes it (`as_english`)."""
    from tasks.constrained import sentence
    from tasks.constrained_natural import as_english

    return as_english([w for w, _ in sentence(rng, noun, rng.randint(4, 7))], end)


def generated_couplet(rng: random.Random, split: str | None = None) -> dict | None:
    """One generated couplet, {line1, line2, rhyme1, rhyme2}; None when ``split`` is given
    and line 1 falls in another split (line 2 is then not drawn: it is the slow half)."""
    table = _rhyming_nouns()
    a = rng.choice(sorted(table))
    line1 = _line(rng, a, ",")
    if split is not None and split_of(line1) != split:
        return None
    b = rng.choice(table[a])
    return {"line1": line1, "line2": _line(rng, b, "."), "rhyme1": a, "rhyme2": b}


def last_word(text: str) -> str | None:
    """The last word of a line, lower case; hyphens and slashes separate words here
    ("net-flame" ends on "flame"), apostrophes inside a word are kept."""
    found = re.findall(r"[a-z]+(?:'[a-z]+)*", text.lower())
    return found[-1] if found else None


def read_couplets(path: str | Path) -> list[dict]:
    """The couplets of a JSONL file (one object a line with string ``line1`` and ``line2``).
    Raises TaskError (one line) on a row that is not one, OSError if unreadable."""
    out = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as err:
                raise TaskError(f"{path}:{number}: not JSON ({err.msg})") from None
            if not (isinstance(row, dict) and isinstance(row.get("line1"), str) and isinstance(row.get("line2"), str)):
                raise TaskError(f"{path}:{number}: needs string fields line1 and line2")
            out.append({"line1": row["line1"].strip(), "line2": row["line2"].strip(),
                        "rhyme1": last_word(row["line1"]) or "", "rhyme2": last_word(row["line2"]) or ""})
    return out


class NaturalRhymesTask(Task):
    name = "rhymes-natural"
    version = VERSION
    description = "English couplets, few-shot: write line 2 so that it rhymes (for pretrained models)."
    face = "natural"
    target_names = ("rhyme_word", "rhyme_family")
    max_words = MAX_WORDS  # a budget in words: generation stops at the end of the line
    sizes = {"full": (0, 500), "quick": (0, 100), "long": (0, 500)}  # no training set: nobody trains on it
    extra_success_splits = ("real",)
    example_tokens = 38

    def __init__(self, fewshot: int = FEWSHOT, real_file: str | Path | None = None) -> None:
        self.fewshot = fewshot
        self.real_file = Path(real_file) if real_file else REAL_COUPLETS

    # -- data ---------------------------------------------------------------------------
    def _couplets(self, split: str, n: int, seed: int) -> list[dict]:
        """``n`` distinct generated couplets of ``split``."""
        rng = random.Random(f"{self.name}-{VERSION}-{split}-{seed}")
        out, seen = [], set()
        for _ in range(400 * n + 1000):
            if len(out) >= n:
                return out
            couplet = generated_couplet(rng, split)
            if couplet is not None and couplet["line1"] not in seen:
                seen.add(couplet["line1"])
                out.append(couplet)
        raise RuntimeError(f"{self.name}: cannot draw {n} distinct {split} couplets")

    @functools.lru_cache(maxsize=4)
    def _pool(self, seed: int) -> tuple[dict, ...]:
        return tuple(self._couplets("train", POOL, seed))

    def item(self, id: str, couplet: dict, seed: int, group: str) -> dict:
        """The scored item of one couplet: prompt (instruction, k exemplars of the seed's
        pool, line 1, line break), line 2 as completion, its decisions."""
        rng = random.Random(f"{id}-{seed}")
        own = family(couplet["rhyme1"])
        shots = [c for c in self._pool(seed) if family(c["rhyme1"]) != own and c["line1"] != couplet["line1"]]
        chosen = rng.sample(shots, self.fewshot)
        prompt = INSTRUCTION + "\n\n" + "".join(f"{c['line1']}\n{c['line2']}\n\n" for c in chosen) + couplet["line1"] + "\n"
        target = couplet["rhyme2"]
        decisions = [{"name": "rhyme_word", "offset": len(prompt), "target": target, "horizon": len(words(couplet["line2"]))},
                     {"name": "rhyme_family", "offset": len(prompt), "target": family(target) or "?",
                      "horizon": len(words(couplet["line2"]))}]
        meta = {"group": group, "a": couplet["rhyme1"], "b": target, "fewshot": self.fewshot}
        return make_example(id, prompt, couplet["line2"], decisions, meta)

    def generate(self, split: str, n: int, seed: int):
        """``n`` items of ``split``: train/dev/test generated, or "real" (the real couplets
        file, all of it when ``n`` exceeds it)."""
        import datasets

        if split == "real":
            couplets, group = read_couplets(self.real_file)[:n], "real"
        elif split in ("train", "dev", "test"):
            couplets, group = self._couplets(split, n, seed), "generated"
        else:
            raise ValueError(f"unknown split {split!r} (train, dev, test or real)")
        rows = [self.item(f"{self.name}-{split}-{seed}-{i}", c, seed, group) for i, c in enumerate(couplets)]
        return datasets.Dataset.from_list(rows)

    def vocabulary(self) -> list[str]:
        """None: no word-level reference is trained on this face."""
        return []

    def baseline_solvers(self, seed: int) -> dict[str, CompleteFn]:
        """Chance: a line 2 drawn at random from the exemplar pool (it rhymes by luck).
        Bag of words: line 1 read without its order, so the rhyme is taken on one of its
        words at random (the last word is not known), with a pool line 2 that rhymes with
        it (a random one where none does): what knowing the words but not the couplet gives."""
        pool = self._pool(seed)

        def random_line(texts: list[str]) -> list[str]:
            return [random.Random(f"{seed}\n{text}").choice(pool)["line2"] for text in texts]

        def bag_of_words(texts: list[str]) -> list[str]:
            out = []
            for text in texts:
                rng = random.Random(f"{seed}\n{text}")
                word = rng.choice(sorted(set(words(text.rstrip("\n").rsplit("\n", 1)[-1]))) or [""])
                rhyming = [c["line2"] for c in pool if rhymes_with(word, last_word(c["line2"]) or "")]
                out.append(rng.choice(rhyming or [c["line2"] for c in pool]))
            return out
        return {"random-line": random_line, "bag-of-words": bag_of_words}

    def with_real_file(self, path: Path) -> "NaturalRhymesTask":
        """This face scoring the couplets of ``path`` as its "real" split."""
        read_couplets(path)  # a broken file fails here, in one line
        return NaturalRhymesTask(self.fewshot, path)

    def check_file(self, path: Path) -> CheckReport:
        """Verify a couplets file: each couplet's last words rhyme (CMU) and differ."""
        report = CheckReport("couplets")
        for i, c in enumerate(read_couplets(path), 1):
            a, b = c["rhyme1"], c["rhyme2"]
            report.add("real", rhymes_with(a, b), f"couplet {i}: {a or '?'!r} and {b or '?'!r} do not rhyme")
        return report

    # -- judging ------------------------------------------------------------------------
    @staticmethod
    def _line2(completion: str) -> str:
        return completion.lstrip("\n").split("\n", 1)[0]

    def check(self, example: dict, completion: str) -> bool:
        """Line 2 has two words or more and ends on a different word that rhymes with line 1's."""
        try:
            line2 = self._line2(completion)
            end = last_word(line2)
            return len(words(line2)) >= 2 and end is not None and rhymes_with(self.meta(example)["a"], end)
        except Exception:  # the verifier never raises on model output
            return False

    def target_from_completion(self, example: dict, completion: str, name: str) -> str | None:
        """``rhyme_word``: the word ending line 2; ``rhyme_family``: its rhyme part."""
        end = last_word(self._line2(completion))
        if end is None:
            return None
        if name == "rhyme_word":
            return end
        if name == "rhyme_family":
            return family(end)
        raise KeyError(f"unknown target {name!r}; known: {self.target_names}")

    def control_offset(self, example: dict, decision: dict) -> int:
        """The end of the instruction: it is the same in every prompt and holds no plan."""
        return len(INSTRUCTION)
