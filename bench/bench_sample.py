"""Cost of amplified decoding (`benchmark.decoding`) against `model.generate` sampling, side by side.

    PYTHONPATH=. .venv/bin/python bench/bench_sample.py [--submission submissions/ref-unstunted-s0]
        [--task rhymes --task constrained --task chess-mate] [--n 300] [--rounds 3] [--threads 1]

On each task's reference model, the first N test prompts are played by the task's own solver
(chess: several turns) with four decoders, in interleaved rounds so that a change of machine
load hits them alike:

1. `generate`: transformers' `model.generate(do_sample=True, top_k=0)` from p (KV cached),
   with the harness's word budget and stop: the obvious way to sample;
2. plain: our decoder at λ = 0 (sampling from p, one forward per token, no cache across steps);
3. amplified: sampling from p_λ with the evaluation's W, D and λ (`EvalConfig`);
4. depth 1: the same at depth 1 (the truncation control the evaluation runs too).

Prints the median seconds of each and the ratios amplified / generate, amplified / plain and
plain / generate. A cell's amplified-decoding metric runs 2-4 once each.

Measured 2026-12-03 on ref-unstunted-s0 (full profile), 300 prompts, one thread, median of 3
rounds, on a 2-core machine shared with three other one-thread jobs (±40% run to run):

    task         generate  plain   amplified  depth 1   amplified/generate  amplified/plain
    rhymes       0.43 s    1.44 s  2.22 s     1.43 s    5.2x                1.5x
    constrained  0.97 s    2.76 s  4.64 s     4.00 s    4.8x                1.7x
    chess-mate   2.81 s    5.32 s  4.61 s     4.92 s    1.6x                0.9x

Our plain sampler is 2-3x `generate` (no KV cache across steps: every step re-reads the
prefix, which the beam search needs anyway); the depth-2 search costs 1.5-1.7x plain sampling
on top (on chess, amplified is faster: its completions end sooner). The cell's three samplers
take 5-15 s of a 33-70 s cell.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark import decoding  # noqa: E402
from benchmark.evaluate import EvalConfig  # noqa: E402
from benchmark.models import encode, load_model, within_budget, word_budget  # noqa: E402
from benchmark.pipeline import model_folder, quiet_libraries  # noqa: E402
from tasks import get_task  # noqa: E402


@torch.no_grad()
def generate_sampling(loaded, max_words: int, batch_size: int = 64):
    """`model.generate` sampling from p under the harness's budget (a `CompleteFn`)."""
    from transformers import StoppingCriteriaList

    def complete(texts: list[str]) -> list[str]:
        out = []
        for start in range(0, len(texts), batch_size):
            ids, mask, _ = encode(loaded.tokenizer, texts[start:start + batch_size], loaded.device, "left")
            max_new, stop = word_budget(loaded, ids.shape[1], max_words)
            gen = loaded.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0,
                                        max_new_tokens=max_new, pad_token_id=loaded.tokenizer.pad_token_id,
                                        eos_token_id=loaded.tokenizer.eos_token_id,
                                        stopping_criteria=StoppingCriteriaList([stop] if stop else []))
            out += [within_budget(t, max_words)
                    for t in loaded.tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)]
        return out
    return complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submission", default="submissions/ref-unstunted-s0")
    parser.add_argument("--task", action="append", dest="tasks")
    parser.add_argument("--n", type=int, default=EvalConfig().max_sampled)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_libraries()
    cfg = EvalConfig()
    for name in args.tasks or ["rhymes", "constrained", "chess-mate"]:
        task = get_task(name)
        loaded = load_model(model_folder(args.submission, name, [Path("submissions")]), torch.device("cpu"))
        examples = list(task.generate("test", task.sizes["full"][1], cfg.seed))[: args.n]
        solvers = {
            "generate": generate_sampling(loaded, task.max_words),
            "plain": decoding.solver(loaded, task.max_words, decoding.Decoding(lam=0.0)),
            "amplified": decoding.solver(loaded, task.max_words, decoding.Decoding(
                cfg.amp_width, cfg.amp_depth, cfg.sample_lambda)),
            "depth 1": decoding.solver(loaded, task.max_words, decoding.Decoding(cfg.amp_width, 1, cfg.sample_lambda)),
        }
        times: dict[str, list[float]] = {k: [] for k in solvers}
        for _ in range(args.rounds):
            for label, solve in solvers.items():
                start = time.perf_counter()
                task.play(examples, solve)
                times[label].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name}: {len(examples)} prompts, W={cfg.amp_width} D={cfg.amp_depth} λ={cfg.sample_lambda}, "
              f"{args.threads} thread(s), median of {args.rounds}: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in med.items()))
        print(f"  amplified / generate {med['amplified'] / med['generate']:.1f}x, amplified / plain "
              f"{med['amplified'] / med['plain']:.1f}x, plain / generate {med['plain'] / med['generate']:.1f}x, "
              f"the cell's three samplers {med['plain'] + med['amplified'] + med['depth 1']:.1f} s")


if __name__ == "__main__":
    main()
