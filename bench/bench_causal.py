"""Speed of `benchmark.causal.follow_rate` on a reference-sized model.

    .venv/bin/python bench/bench_causal.py [--pairs 200] [--threads 1] [--model FOLDER]

Without --model it times a randomly initialised GPT-2 of the reference size (4 layers ×
128, the rhymes word vocabulary); the cost does not depend on the weights. It reports the
whole call (every layer, decision and control) and its parts: one unpatched greedy pass
over the prompts, and one patched pass over the pairs at one layer. Numbers vary ~40% run
to run on a shared machine.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.causal import follow_rate, greedy, states_at_tokens  # noqa: E402
from benchmark.models import LoadedModel, load_model, new_gpt2, word_tokenizer  # noqa: E402
from tasks import get_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    task = get_task("rhymes")
    if args.model:
        loaded = load_model(args.model, torch.device("cpu"))
    else:
        tok = word_tokenizer(task.vocabulary())
        loaded = LoadedModel(new_gpt2(tok, 4, 128, 4, 64, seed=0).eval(), tok, Path("."))
    exs = [e for e in task.generate("test", args.examples, 0) if e["decisions"]]
    prompts = [e["prompt"] for e in exs][: args.pairs]

    t0 = time.perf_counter()
    greedy(loaded, prompts, task.max_words)
    t_plain = time.perf_counter() - t0
    pos = [len(loaded.tokenizer(p, add_special_tokens=False)["input_ids"]) - 1 for p in prompts]
    states = states_at_tokens(loaded, prompts, pos, [2])[0]
    t0 = time.perf_counter()
    greedy(loaded, prompts, task.max_words, layer=2, token_positions=pos, vectors=states)
    t_patched = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = follow_rate(loaded, task, exs, n_pairs=args.pairs)
    t_all = time.perf_counter() - t0
    n_layers = len(res["layers"])
    print(f"{len(prompts)} prompts, {task.max_words} words, threads={args.threads}")
    print(f"  unpatched greedy: {t_plain:.2f} s   patched greedy (one layer): {t_patched:.2f} s")
    print(f"  follow_rate: {res['n_pairs']} pairs x {n_layers} layers x 2 positions: {t_all:.2f} s "
          f"({t_all / (2 * n_layers):.2f} s per (layer, position))")


if __name__ == "__main__":
    main()
