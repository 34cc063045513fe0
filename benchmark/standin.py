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
- ordinary English: paragraphs of the constrained task's grammar sentences (the grammar
  rhymes-natural's lines come from, ending on any noun, not only rhyming ones).

This is a model trained on the face's format: its success says that the harness works
with such a model, not what a real pretrained model would score. `build` is deterministic
(same config, same weights: one torch thread, seeded data and initialisation) and caches
by config (train_log.json). The recipe is docs/experiments/standin_budget.py's.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

NAME = "standin-gpt2-bpe"  # its submission's name
TASKS = ("rhymes-natural",)  # the face it is trained for (constrained-natural's prompts, 258 tokens, exceed its context)
SHOTS = (0, 1, 2, 3, 4, 5)  # exemplar counts of the few-shot documents


@dataclass(frozen=True)
class StandinConfig:
    """Everything that decides the stand-in (train_log.json records it; a change retrains)."""

    seed: int = 0  # data, initialisation and batch order
    fewshot_docs: int = 6000  # rhymes-natural train items, spread evenly over SHOTS
    couplets: int = 3000  # bare couplets
    paragraphs: int = 3000  # paragraphs of ordinary English, 2-5 sentences each
    vocab_size: int = 2000
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256  # the texts of rhymes-natural (real couplets: 127 tokens); not constrained-natural's
    steps: int = 4500  # where it learns to rhyme varies with the draw: docs/experiments/standin_budget.py
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 100

    def to_dict(self) -> dict:
        from tasks.rhymes_natural import VERSION  # its couplets are drawn by the face's version

        return {"standin": asdict(self), "shots": list(SHOTS), "rhymes_natural": VERSION}

    def train_config(self):
        """The `benchmark.train.TrainConfig` of its training loop (plain next-token loss)."""
        from benchmark.train import TrainConfig

        return TrainConfig(variant="unstunted", seed=self.seed, n_layer=self.n_layer, n_embd=self.n_embd,
                           n_head=self.n_head, n_positions=self.n_positions, steps=self.steps,
                           batch_size=self.batch_size, lr=self.lr, warmup=self.warmup)


FULL = StandinConfig()
# A smoke run's and the tests' stand-in: seconds to build, learns little.
QUICK = replace(FULL, fewshot_docs=120, couplets=60, paragraphs=60, vocab_size=400, n_layer=2, n_embd=32,
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


def corpus(cfg: StandinConfig) -> dict[str, list[str]]:
    """The stand-in's training documents by kind ("fewshot-<k>", "couplets", "prose"), in
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
    tokenizer = bpe_tokenizer([d for kind in docs.values() for d in kind], cfg.vocab_size)
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
