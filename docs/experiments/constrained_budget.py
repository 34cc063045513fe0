"""How much data, how many steps and which model the constrained reference needs (issue 13).

    .venv/bin/python docs/experiments/constrained_budget.py N_TRAIN STEPS [OUT]
        [--batch B] [--lr LR] [--warmup W] [--layers L] [--embd E] [--heads H] [--seed S]
        [--untied]

Trains the unstunted constrained reference recipe (`benchmark.train.train_reference`,
model seed S, data seed 0, batch 16, lr 3e-3, warm-up 100 unless given) on N_TRAIN
generated examples for STEPS steps and prints greedy success per family on 500 test
examples (100 per family); every test completion goes to OUT/test_completions.jsonl for
a look at the failures. ``--untied`` gives the model separate output embeddings (the
references tie them, `benchmark.models.new_gpt2`). One torch thread; seconds are the
training's own (`train_log.json`), on a machine shared with 2-3 other processes in the
second session, so they are high by up to a half.

| session | train examples | steps | model (layers x width, heads) | seed | s | all | end-word | acrostic | kth-word | counts | end-rhyme |
|---|---|---|---|---|---|---|---|---|---|---|---|
| 1 | 10,000 (the profile) | 625 (one pass) | 4x128, 4, tied | 0-2 | | 0.3% | | | | | |
| 1 | 10,000 | 5,000 | 4x128, 4, tied | 0 | | 7.6% | 3 | 13 | 21 | 0 | 1 |
| 1 | 50,000 | 5,000 | 4x128, 4, tied | 0 | | 23% | 23 | 40 | 36 | 15 | 1 |
| 1 | 100,000 | 10,000 | 4x128, 4, tied | 0 | 664 | 46% | 79 | 76 | 49 | 15 | 11 |
| 2 | 100,000 | 10,000 | 4x128, 4, tied | 0 | 1063 | 34% | 59 | 40 | 57 | 0 | 15 |
| 2 | 100,000 | 10,000 | 4x128, 4, untied | 0 | 882 | 52% | 97 | 72 | 64 | 4 | 21 |
| 2 | 100,000 | 10,000 | 4x128, 8, untied | 0 | 1090 | 58% | 97 | 63 | 64 | 0 | 65 |
| 3 | 100,000 | 10,000 | 4x128, 8, untied | 1 | 539 | 54% | 97 | 71 | 52 | 0 | 49 |
| 3 | 100,000 | 10,000 | 4x128, 8, untied | 2 | 538 | 43% | 61 | 61 | 47 | 0 | 46 |
(family figures: of 100 test prompts each; session 3's two seeds ran side by side, one
core each, on an otherwise idle machine). The long profile's recipe (the last three rows)
gives 58 / 54 / 43% over seeds 0-2: at least 40% on every seed, but at least 70% in
three families on none (end-word 97 / 97 / 61, acrostic 63 / 71 / 61). Session 2 re-ran session 1's 100k x 10k
recipe with the same code and got 34%, not 46%; the cause was not found, so a difference
of 10-20 points in one family between two runs is within what one run can show.

Why copying the slot word fails (session 2, from the test completions of the runs
above). The completions almost always have the right number of words (97-100 of 100
per family); what is wrong is the word. With tied embeddings the model puts a word of
the right topic where the slot word belongs: 39 of the 41 failed end-word completions
end on a noun of the asked noun's topic ("end with yacht in 5 words : the swimmer
reached the beach"), and even teacher-forced on the reference prefix it predicts the
asked end noun only 76 of 100 times, so the copy itself fails, not only the plan. Tied
input and output embeddings of nouns that share contexts stay close, and a copied
embedding then scores its topic's nouns alike; untied output embeddings make the copy
exact (end-word 59 -> 97, teacher-forced 98). What is left:

- kth-word: verbs are placed (38-43 of 50), adjectives not (8-10 of 27): the model
  writes another adjective of the topic ("word 5 is sharp in 6 words : the worker
  cleaned the strong wire"), repeats one ("the tasty tasty cheese"), or is one position
  off; agents in between (13-16 of 23).
- acrostic: the last word (the noun, which must fit the verb and the last letter) is
  where most fail ("p a r e n t : paul always reached each sleepy ship").
- end-rhyme: it has to know each of 278 cues' rhyming nouns (98 cues have one) and pick
  that noun's topic at the first content word; tied it falls back on one sentence ("the
  baker shared the pie"); 8 heads brought it from 21 to 65 on seed 0.
- counts: out of reach of a word-level model here. It must know every word's letter
  count, and the test prompts are by construction never in training (the family has
  147 prompts in the 20,000 counts items of a 100,000-example training set, and splits
  go by prompt): of the 100 test items, 6 ask for 12 or 54 letters, numbers no training
  item has, 2 for 57 (one training item) and 19 for 18 (ten training items). Lengths
  are right; letter totals are off by 1 to 15.
"""

import argparse
import collections
import json
import time
from pathlib import Path

import torch

import tasks.constrained as constrained
from benchmark import causal
from benchmark.models import load_model
from benchmark.train import TrainConfig, train_reference
from tasks import get_task


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    constrained.ConstrainedTask.sizes = {"full": (args.n_train, 500), "quick": (2000, 100)}
    task = get_task("constrained")
    cfg = TrainConfig(tasks=("constrained",), size="full", seed=args.seed, steps=args.steps,
                      batch_size=args.batch, lr=args.lr, warmup=args.warmup,
                      n_layer=args.layers, n_embd=args.embd, n_head=args.heads,
                      tie_embeddings=not args.untied)
    out = args.out or Path(
        f"runs/constrained-n{args.n_train}-s{args.steps}-b{args.batch}-lr{args.lr}"
        f"-l{args.layers}-e{args.embd}-h{args.heads}{'-untied' if args.untied else ''}"
        f"-seed{args.seed}")
    if not out.exists():
        start = time.time()
        train_reference(cfg, out)
        print(f"trained in {time.time() - start:.0f} s (with data generation)")
    loaded = load_model(out)
    test = [dict(row) for row in task.generate("test", 500, 0)]
    completions = causal.greedy(loaded, [ex["prompt"] for ex in test], task.max_words)
    by_family = collections.defaultdict(list)
    with open(out / "test_completions.jsonl", "w") as f:
        for ex, completion in zip(test, completions):
            ok = task.check(ex, completion)
            by_family[task.group(ex)].append(ok)
            f.write(json.dumps({"family": task.group(ex), "prompt": ex["prompt"],
                                "reference": ex["completion"], "completion": completion,
                                "ok": ok}) + "\n")
    log = json.loads((out / "train_log.json").read_text())
    print(out, f"train {log['seconds']} s", {family: f"{sum(v)}/{len(v)}" for family, v in
                                             sorted(by_family.items())},
          f"all {sum(map(sum, by_family.values())) / len(test):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n_train", type=int)
    parser.add_argument("steps", type=int)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--embd", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--untied", action="store_true",
                        help="separate output embeddings (the references tie them)")
    main(parser.parse_args())
