"""The cheapest stand-in recipe that writes rhyming second lines (issue 18, part 3).

    .venv/bin/python docs/experiments/standin_budget.py OUT [--split dev|test|real] [--n N]
        [--shots K ...] [--fewshot-docs D] [--couplets C] [--paragraphs P] [--vocab V]
        [--layers L] [--embd E] [--heads H] [--steps S] [--batch B] [--lr LR] [--seed SEED]

Builds the stand-in (`benchmark.standin.build`, the defaults of `StandinConfig` unless
given) into OUT and prints greedy rhymes-natural success on N items of the split (dev:
the recipe is chosen there; test and real are reported) for each exemplar count K, with
Wilson 95% intervals, through the harness's own solver (`benchmark.evaluate.solver`).
One torch thread; seconds are the training's own (train_log.json), on a 2-core machine
shared with three other processes.

Results (filled in below as measured).
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
from tasks.rhymes_natural import NaturalRhymesTask

OPTIONS = {"fewshot_docs": int, "couplets": int, "paragraphs": int, "vocab_size": int, "n_layer": int,
           "n_embd": int, "n_head": int, "steps": int, "batch_size": int, "lr": float, "seed": int}


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    cfg = replace(FULL, **{k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None})
    start = time.time()
    folder = build(args.out, cfg, lambda step, steps, loss: step % 250 == 0 and print(
        f"step {step}/{steps} loss {loss:.3f} ({time.time() - start:.0f}s)", flush=True))
    print(f"built in {time.time() - start:.0f}s: {cfg}", flush=True)
    loaded = load_model(folder)
    for k in args.shots:
        task = NaturalRhymesTask(fewshot=k)
        items = list(task.generate(args.split, args.n, 0))
        outs = task.play(items, solver(loaded, task.max_words, 1, 64))
        ok = sum(task.check(ex, out) for ex, out in zip(items, outs))
        lo, hi = stats.wilson_interval(ok, len(items))
        print(f"k={k} {args.split}: {ok}/{len(items)} = {ok / len(items):.3f} [{lo:.3f}, {hi:.3f}]", flush=True)
        for ex, out in list(zip(items, outs))[:3]:
            print(f"   {ex['prompt'].splitlines()[-1]!r} -> {out!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--split", default="dev", choices=["dev", "test", "real"])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--shots", type=int, nargs="+", default=[3])
    for name, kind in OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)
    assert {f.name for f in fields(FULL)} >= set(OPTIONS)
    main(parser.parse_args())
