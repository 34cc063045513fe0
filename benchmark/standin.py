"""The pretrained stand-in: a small GPT-2 with a byte-level BPE tokenizer, trained here.

There is no model hub on this machine, so the natural faces (rhymes-natural above all)
would only ever meet models trained on the word-level formats. The stand-in plays the
part of a pretrained model: its tokenizer is byte-level BPE (words split into pieces, a
space inside the token, as GPT-2's), it is trained on every token of plain text, not on
completions, and it is saved as an ordinary Hugging Face folder (config, safetensors,
tokenizer.json), so `benchmark.submissions` and `benchmark.evaluate` score it exactly like
a submission.

Its corpus (`corpus`), all drawn from the *train* split (`tasks.base.split_of` hashes
line 1, so no dev, test or real couplet is ever in it):

- few-shot documents: rhymes-natural's own train items, prompt and line 2 (instruction,
  exemplar couplets, line 1, line break, line 2), with k exemplars for every k in `SHOTS`,
  so the model knows the face's format at any k;
- bare couplets: line 1, a line break, line 2;
- broad couplets (`broad_couplet`), bare and in few-shot documents: line 1 ends on any of
  wordfreq's `broad_words` commonest English words that has a CMU rhyme among them, line 2 on
  one of its commonest partners. The grammar couplets rhyme only ~200 nouns; real
  couplets end on verbs, adjectives and rarer words ("lid", "applied", "hear"), and a
  model that met none of them rhymes 3.5% of real couplets; this recipe (its tokenizer
  cutting each word's spelled rime into its own piece) still rhymes only 5.2% of them
  (issue 18, docs/experiments/standin_budget.py);
- ordinary English: paragraphs of the constrained task's grammar sentences (the grammar
  rhymes-natural's lines come from, ending on any noun, not only rhyming ones).

This is a model trained on the face's format: its success says that the harness works
with such a model, not what a real pretrained model would score. `build` is deterministic
(same config, same weights: one torch thread, seeded data and initialisation) and caches
by config (train_log.json). The recipe is docs/experiments/standin_budget.py's.
"""

from __future__ import annotations

import functools
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

NAME = "standin-gpt2-bpe"  # its submission's name
TASKS = ("rhymes-natural",)  # the face it is trained for (constrained-natural's prompts, 258 tokens, exceed its context)
SHOTS = (0, 1, 2, 3)  # exemplar counts of the few-shot documents (the face's default is 1)
BROAD_PARTNERS = 8  # a broad line 2 ends on one of line 1's commonest partners: the words a poet reaches for
# Line 1's end punctuation in broad couplets, about as often as in the shipped real couplets
# (a comma in half of them, none in a fifth).
LINE1_ENDS = ((",", 10), ("", 4), (".", 2), (";", 2), ("!", 1), (":", 1))


@dataclass(frozen=True)
class StandinConfig:
    """Everything that decides the stand-in (train_log.json records it; a change retrains)."""

    seed: int = 0  # data, initialisation and batch order
    fewshot_docs: int = 6000  # rhymes-natural train items, spread evenly over SHOTS
    couplets: int = 3000  # bare couplets
    paragraphs: int = 3000  # paragraphs of ordinary English, 2-5 sentences each
    broad_docs: int = 6000  # few-shot documents whose couplet is broad, spread evenly over SHOTS
    broad_couplets: int = 6000  # bare broad couplets
    broad_words: int = 2000  # wordfreq's commonest English words a broad line 1 may end on (10,000: each met too rarely)
    vocab_size: int = 1000  # words split into pieces: a rare word's ending is a piece it shares with its rhymes
    rime_pieces: bool = True  # the tokenizer cuts off each word's spelled rime (`benchmark.models.RIME_PATTERN`)
    spelled_alike: bool = True  # a broad line 2 ends on a partner spelled alike where line 1's word has one
    broad_line1: str = "grammar"  # a broad line 1's shape (`LINE1_SHAPES`)
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256  # the texts of rhymes-natural (real couplets: 127 tokens); not constrained-natural's
    steps: int = 12000  # docs/experiments/standin_budget.py
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 100

    def to_dict(self) -> dict:
        from tasks.rhymes_natural import VERSION  # its couplets are drawn by the face's version

        d = asdict(self)
        for name, off in (("rime_pieces", False), ("spelled_alike", False), ("broad_line1", "grammar")):
            if d[name] == off:  # left out, so a stand-in built before the option stays cached
                del d[name]
        return {"standin": d, "shots": list(SHOTS), "rhymes_natural": VERSION}

    def train_config(self):
        """The `benchmark.train.TrainConfig` of its training loop (plain next-token loss)."""
        from benchmark.train import TrainConfig

        return TrainConfig(variant="unstunted", seed=self.seed, n_layer=self.n_layer, n_embd=self.n_embd,
                           n_head=self.n_head, n_positions=self.n_positions, steps=self.steps,
                           batch_size=self.batch_size, lr=self.lr, warmup=self.warmup)


FULL = StandinConfig()
# A smoke run's and the tests' stand-in: seconds to build, learns little.
QUICK = replace(FULL, fewshot_docs=120, couplets=60, paragraphs=60, broad_docs=120, broad_couplets=60, vocab_size=400, n_layer=2, n_embd=32,
                n_head=2, steps=40)


def _prose(rng: random.Random) -> str:
    """A paragraph of 2-5 grammar sentences, each ending on any noun of the lexicon; a
    sentence that would be a dev or test line 1 (with its comma) is drawn again."""
    from tasks.base import split_of
    from tasks.constrained import nouns, sentence
    from tasks.constrained_natural import as_english

    out = []
    while len(out) < rng.randint(2, 5):
        words = [w for w, _ in sentence(rng, rng.choice(nouns()), rng.randint(4, 8))]
        if split_of(as_english(words, ",")) == "train":
            out.append(as_english(words, "."))
    return " ".join(out)


@functools.lru_cache(maxsize=4)
def broad_rhymes(n_words: int, spelled_alike: bool = False) -> dict[str, tuple[str, ...]]:
    """Word -> its rhyming partners (CMU) among wordfreq's ``n_words`` commonest English
    words, commonest first; words with none, names and rude words left out.
    ``spelled_alike``: only the partners with the word's spelled rime ("night": "light",
    not "white"), where it has any."""
    import wordfreq

    from benchmark.models import spelled_rime
    from tasks.constrained import ACROSTIC_BLOCKLIST, NAMES
    from tasks.pronounce import rhyme_parts
    from tasks.rhymes import BLOCKLIST

    skip = ACROSTIC_BLOCKLIST | BLOCKLIST | set(NAMES)
    pool = [w for w in wordfreq.top_n_list("en", n_words) if w.isalpha() and len(w) > 1 and w not in skip]
    by_part: dict[str, list[str]] = {}
    for word in pool:
        for part in rhyme_parts(word):
            by_part.setdefault(part, []).append(word)
    rank = {w: i for i, w in enumerate(pool)}
    out = {}
    for word in pool:
        partners = dict.fromkeys(p for part in sorted(rhyme_parts(word)) for p in by_part[part] if p != word)
        own = spelled_rime(word)
        alike = [p for p in partners if spelled_rime(p) == own] if spelled_alike else []
        if partners:
            out[word] = tuple(sorted(alike or partners, key=rank.__getitem__)[:BROAD_PARTNERS])
    return out


@functools.lru_cache(maxsize=2)
def _line1_words(n_words: int) -> tuple[str, ...]:
    """The words a broad line 1 may end on, sorted (sorted once, not per couplet)."""
    return tuple(sorted(broad_rhymes(n_words)))


def _ending_on(rng: random.Random, word: str, end: str) -> str:
    """A grammar sentence of 4-7 words whose last word is replaced by ``word``."""
    from tasks.constrained import nouns, sentence
    from tasks.constrained_natural import as_english

    ws = [w for w, _ in sentence(rng, rng.choice(nouns()), rng.randint(4, 7))]
    return as_english(ws[:-1] + [word], end)


# A broad line 1's shapes: "grammar", a grammar sentence with its last word swapped;
# "varied", that sentence after an opener half the time ("And", "Oh,") and joined to a
# second one a third of the time; "mixed", half varied and half a loose string of 3-10
# common words with commas here and there (real lines are longer and freer than the grammar's).
LINE1_SHAPES = ("grammar", "varied", "mixed")
OPENERS = ("And", "But", "Oh,", "So", "Then", "When", "If", "As", "Now", "Yet", "I know", "For")
JOINS = (", and", ";", " when", ", but", " as")


def _line1(rng: random.Random, word: str, end: str, shape: str, n_words: int) -> str:
    """A broad line 1 of ``shape`` (`LINE1_SHAPES`) ending on ``word``, then ``end``."""
    if shape == "mixed" and rng.random() < 0.5:
        pool = _line1_words(n_words)
        ws = [rng.choice(pool) + ("," if rng.random() < 0.15 else "") for _ in range(rng.randint(2, 9))]
        return " ".join([ws[0].capitalize(), *ws[1:], word]) + end
    line = _ending_on(rng, word, end)
    if shape == "grammar":
        return line
    if rng.random() < 1 / 3:
        line = _ending_on(rng, rng.choice(_line1_words(n_words)), "") + rng.choice(JOINS) + " " + _continued(line)
    if rng.random() < 0.5:
        line = rng.choice(OPENERS) + " " + _continued(line)
    return line


def _continued(line: str) -> str:
    """A sentence as the rest of a longer one: its first word lower case unless a name or "I"."""
    from tasks.constrained import NAMES

    first = line.split(" ", 1)[0]
    return line if first.lower() in NAMES or first == "I" else line[0].lower() + line[1:]


def broad_couplet(rng: random.Random, split: str, n_words: int, spelled_alike: bool = False,
                  shape: str = "grammar") -> dict | None:
    """One broad couplet, {line1, line2, rhyme1, rhyme2}: line 1 ends on any word of
    `broad_rhymes` (drawn uniformly, so rare words are met as often as common ones), line 2
    on one of its partners; None when line 1 falls outside ``split``."""
    from tasks.base import split_of

    table = broad_rhymes(n_words, spelled_alike)
    a = rng.choice(_line1_words(n_words))
    ends, weights = zip(*LINE1_ENDS)
    line1 = _line1(rng, a, rng.choices(ends, weights)[0], shape, n_words)
    if split_of(line1) != split:
        return None
    b = rng.choice(table[a])
    return {"line1": line1, "line2": _ending_on(rng, b, rng.choice((".", ",", ""))), "rhyme1": a, "rhyme2": b}


def corpus(cfg: StandinConfig) -> dict[str, list[str]]:
    """The stand-in's training documents by kind ("fewshot-<k>", "couplets", "prose",
    "broad-couplets", "broad-fewshot-<k>"), in
    a fixed order (see the module docstring). Kinds are batched apart, so a batch's
    documents are of a length and padding is small (`benchmark.train.batch_schedule` gives
    each kind an equal share of compute)."""
    from tasks.rhymes_natural import NaturalRhymesTask, generated_couplet

    docs = {}
    for k in SHOTS:
        items = NaturalRhymesTask(fewshot=k).generate("train", cfg.fewshot_docs // len(SHOTS), 1000 * cfg.seed + k)
        docs[f"fewshot-{k}"] = [ex["prompt"] + ex["completion"] for ex in items]
    rng = random.Random(f"standin-{cfg.seed}")
    docs["couplets"] = []
    while len(docs["couplets"]) < cfg.couplets:
        couplet = generated_couplet(rng, "train")
        if couplet is not None:
            docs["couplets"].append(couplet["line1"] + "\n" + couplet["line2"])
    docs["prose"] = [_prose(rng) for _ in range(cfg.paragraphs)]
    broad = []
    while len(broad) < cfg.broad_docs + cfg.broad_couplets:
        couplet = broad_couplet(rng, "train", cfg.broad_words, cfg.spelled_alike, cfg.broad_line1)
        if couplet is not None:
            broad.append(couplet)
    docs["broad-couplets"] = [c["line1"] + "\n" + c["line2"] for c in broad[cfg.broad_docs:]]
    per_k = cfg.broad_docs // len(SHOTS)
    for i, k in enumerate(SHOTS):
        task = NaturalRhymesTask(fewshot=k)
        items = [task.item(f"broad-{k}-{j}", c, 1000 * cfg.seed + k, "broad")
                 for j, c in enumerate(broad[i * per_k:(i + 1) * per_k])]
        docs[f"broad-fewshot-{k}"] = [ex["prompt"] + ex["completion"] for ex in items]
    return docs


def built_with(folder: Path) -> dict | None:
    """The config a stand-in folder was built with (None: none there)."""
    from benchmark.baselines import trained_with

    return trained_with(Path(folder))


def build(out: Path, cfg: StandinConfig = FULL, progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Train the stand-in and save it as a model folder at ``out`` (atomically); a folder
    already built with ``cfg`` is kept as it is. Returns ``out``."""
    from benchmark.models import bpe_tokenizer, encode_examples, new_gpt2
    from benchmark.train import check_context, fit, save_reference

    if built_with(out) == cfg.to_dict():
        return Path(out)
    docs = corpus(cfg)
    tokenizer = bpe_tokenizer([d for kind in docs.values() for d in kind], cfg.vocab_size, cfg.rime_pieces)
    # Every token is trained on (an empty prompt), as a pretrained model is: no completion mask.
    data = {kind: encode_examples(tokenizer, [{"prompt": "", "completion": d, "decisions": []} for d in texts],
                                  add_eos=True) for kind, texts in docs.items()}
    check_context(data, cfg.n_positions)
    model = new_gpt2(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions, cfg.seed)  # on the CPU
    info = fit(model, data, cfg.train_config(), tokenizer.pad_token_id, progress)
    return save_reference(model, tokenizer, cfg, Path(out), {**info, "documents": {kind: len(texts) for kind, texts in docs.items()}})


def write_submission(folder: Path, cfg: StandinConfig = FULL,
                     progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Build the stand-in into ``folder/model`` and write its submission.toml; returns ``folder``."""
    build(Path(folder) / "model", cfg, progress)
    write_toml(folder)
    return Path(folder)


def write_toml(folder: Path) -> None:
    """The stand-in's submission.toml in ``folder``: its model folder and faces (`TASKS`)."""
    from benchmark.submissions import write_submission_toml

    Path(folder).mkdir(parents=True, exist_ok=True)
    write_submission_toml(folder, NAME, "pretrained stand-in: GPT-2 with byte-level BPE trained on English "
                          "and couplets (benchmark/standin.py)", tasks=list(TASKS))
