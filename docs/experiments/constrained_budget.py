"""How much data and how many steps the constrained reference needs (issue 13).

    .venv/bin/python docs/experiments/constrained_budget.py N_TRAIN STEPS [OUT]

Trains the full profile's unstunted constrained reference recipe on N_TRAIN generated
examples for STEPS steps (seed 0) and prints greedy success per family on 500 test
examples. Measured 2026-12-02 (one torch thread):

| train examples | steps | success (all) | end-word | acrostic | kth-word | counts | end-rhyme |
|---|---|---|---|---|---|---|---|
| 10,000 (the profile) | 625 (one pass) | 0.3% (seeds 0-2 of the full run) | | | | | |
| 10,000 | 5,000 | 7.6% | 3 | 13 | 21 | 0 | 1 |
| 50,000 | 5,000 | 23% | 23 | 40 | 36 | 15 | 1 |
| 100,000 | 10,000 | 46% | 79 | 76 | 49 | 15 | 11 |

(family figures: of 100 test prompts each). The 100k run took 664 s.
"""

import collections
import sys
from pathlib import Path

import torch

import tasks.constrained as constrained
from benchmark import causal
from benchmark.models import load_model
from benchmark.train import TrainConfig, train_reference
from tasks import get_task


def main(n_train: int, steps: int, out: Path) -> None:
    torch.set_num_threads(1)
    constrained.ConstrainedTask.sizes = {"full": (n_train, 500), "quick": (2000, 100)}
    task = get_task("constrained")
    if not out.exists():
        train_reference(TrainConfig(tasks=("constrained",), size="full", seed=0, steps=steps), out)
    loaded = load_model(out)
    test = [dict(row) for row in task.generate("test", 500, 0)]
    completions = causal.greedy(loaded, [ex["prompt"] for ex in test], task.max_new_tokens)
    by_family = collections.defaultdict(list)
    for ex, completion in zip(test, completions):
        by_family[task.group(ex)].append(task.check(ex, completion))
    print({family: f"{sum(v)}/{len(v)}" for family, v in sorted(by_family.items())},
          f"all {sum(map(sum, by_family.values())) / len(test):.3f}")


if __name__ == "__main__":
    n, s = int(sys.argv[1]), int(sys.argv[2])
    main(n, s, Path(sys.argv[3]) if len(sys.argv) > 3 else Path(f"runs/constrained-n{n}-s{s}"))
