"""The cost of counting the generation budget in words under a subword tokenizer.

    .venv/bin/python bench/bench_generate_words.py [--prompts 64] [--words 8] [--repeats 5]

Under a subword tokenizer `benchmark.models.generate_words` caps generation at
``TOKENS_PER_WORD`` tokens a word and stops each row once it has written more than the
word budget or ended its line (`_WordBudget`, a stopping criterion that decodes the rows
at every step). Side by side, on the tests' 2-layer, 32-wide GPT-2 with a byte-level BPE
tokenizer trained on rhymes-natural text (tests/tiny_models.py; a forward step is cheap, so
the per-step decoding weighs most here) (untrained weights: a row rarely ends its line, so this is the
criterion's worst case, where only the word count stops it):

1. ``generate_words``: the token cap and the criterion;
2. the obvious alternative: ``model.generate`` to the token cap, then the same cut
   (`within_budget`); it gives the same texts (checked) and decodes nothing per step.

Prints the medians and the ratio (rounds interleave the two, so load hits both alike).

Measured 2026-12-03 (one thread, machine shared with other jobs; 64 prompts of 103 tokens,
8 words = 64 tokens): generate_words 0.151 s, cap-then-cut 0.114 s, ratio 1.32 (a second
run, beside a quick run: 0.184 s / 0.148 s, 1.24): the
criterion costs a third on the tiniest model and stops no row early on untrained weights.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.models import encode, generate_words, load_model, within_budget, word_budget  # noqa: E402
from tasks import get_task  # noqa: E402
from tests.tiny_models import bpe_gpt2_folder  # noqa: E402


def capped(loaded, ids, mask, max_words: int) -> list[str]:
    """``generate`` to the token cap, cut afterwards: no per-step stopping criterion (the
    cap is `word_budget`'s, the one generate_words uses)."""
    tok = loaded.tokenizer
    gen = loaded.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                max_new_tokens=word_budget(loaded, ids.shape[1], max_words)[0],
                                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return [within_budget(t, max_words) for t in tok.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--words", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = get_task("rhymes-natural")
    examples = list(task.generate("test", args.prompts, 0))
    prompts = [ex["prompt"] for ex in examples]
    with tempfile.TemporaryDirectory() as folder:
        bpe_gpt2_folder(Path(folder), [ex["prompt"] + ex["completion"] for ex in examples], vocab_size=800,
                        n_positions=1024)
        loaded = load_model(folder, torch.device("cpu"))
    loaded.model.eval()
    ids, mask, _ = encode(loaded.tokenizer, prompts, loaded.device, padding_side="left")
    print(f"{len(prompts)} prompts of {ids.shape[1]} tokens (padded), budget {args.words} words "
          f"= {word_budget(loaded, ids.shape[1], args.words)[0]} tokens, {args.threads} thread(s)")

    times = {"generate_words (criterion)": [], "generate to the cap, cut after": []}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, fn in (("generate_words (criterion)", generate_words), ("generate to the cap, cut after", capped)):
                start = time.perf_counter()
                out = fn(loaded, ids, mask, args.words)
                times[name].append(time.perf_counter() - start)
                if name.startswith("generate_words"):
                    reference = out
                else:
                    assert out == reference, "the two paths must give the same texts"
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, m in medians.items():
        print(f"{name:32s} {m:7.3f} s  (median of {args.repeats})")
    a, b = medians.values()
    print(f"ratio generate_words / cap-then-cut: {a / b:.2f}")


if __name__ == "__main__":
    main()
