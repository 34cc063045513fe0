"""Speed of the amplification engine against `model.generate`, side by side.

    /work/venv/bin/python bench/bench_amplify.py [--prefixes 64] [--repeats 4] [--threads 1]

1. beam_search on N prefixes (lengths 8..48) vs generate(num_beams=W, num_return_sequences=W)
   one prefix at a time, and batched generate; checks that the beams are the same. Rounds
   interleave the three so that a change in machine load hits them alike.
2. amplified_scores at every position of an 8 × 64 batch (what evaluation and the stunted
   training run): the tree engine vs re-running a beam search from every prefix
   (method="prefix") and vs `generate` one prefix at a time, on a sample of the positions.
Prints medians and ratios (numbers vary ~40% run to run on a shared machine).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.amplify import amplified_scores, beam_search  # noqa: E402


def tiny_model(vocab: int = 2000) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=128, n_embd=128, n_layer=4, n_head=4,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():  # peaked distributions, so beams are not decided by float noise
        model.transformer.wte.weight.mul_(6.0)
    model.generation_config.eos_token_id = None  # no EOS handling, like our beam search
    model.generation_config.pad_token_id = 0
    return model.eval()


def median_time(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


@torch.no_grad()
def generate_one_by_one(model, prefixes, width, depth):
    beams = []
    for p in prefixes:
        ids = torch.tensor([p])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), num_beams=width, num_return_sequences=width,
                             max_new_tokens=depth, do_sample=False, length_penalty=0.0, early_stopping=False)
        beams.append(out[:, len(p):].tolist())
    return beams


@torch.no_grad()
def generate_batched(model, prefixes, width, depth):
    length = max(len(p) for p in prefixes)
    ids = torch.tensor([[0] * (length - len(p)) + p for p in prefixes])
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prefixes])
    out = model.generate(ids, attention_mask=mask, num_beams=width, num_return_sequences=width,
                         max_new_tokens=depth, do_sample=False, length_penalty=0.0, early_stopping=False)
    return out[:, length:].view(len(prefixes), width, depth).tolist()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefixes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="1 is steadier on a busy machine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    prefixes = [torch.randint(1, 2000, (int(n),), generator=g).tolist()
                for n in torch.randint(8, 49, (args.prefixes,), generator=g)]

    # Warm-up (first calls are several times slower).
    generate_one_by_one(model, prefixes[:2], 4, 2)

    print(f"beam search on {len(prefixes)} prefixes, 4 layers x 128, vocab 2000; per-prefix seconds, "
          f"median of {args.repeats} interleaved rounds (generate one by one: a quarter of the prefixes a round)")
    print(f"{'W':>2} {'D':>2} {'ours ms':>8} {'gen 1-by-1 ms':>14} {'gen batched ms':>15} {'x vs 1-by-1':>12} "
          f"{'x vs batched':>13}  beams identical")
    quarter = len(prefixes) // 4
    for width, depth in [(4, 2), (4, 4), (8, 2), (8, 4)]:
        beam_search(model, prefixes, width, depth)  # warm-up for these shapes
        generate_batched(model, prefixes[:16], width, depth)
        t_ours, t_one, t_bat, one = [], [], [], {}
        for r in range(args.repeats):
            t, ours = median_time(lambda: beam_search(model, prefixes, width, depth), 1)
            t_ours.append(t / len(prefixes))
            t, bat = median_time(lambda: generate_batched(model, prefixes, width, depth), 1)
            t_bat.append(t / len(prefixes))
            part = list(range((r % 4) * quarter, (r % 4 + 1) * quarter))
            t, beams = median_time(lambda: generate_one_by_one(model, [prefixes[i] for i in part], width, depth), 1)
            t_one.append(t / len(part))
            one.update(zip(part, beams))
        t_ours, t_one, t_bat = (statistics.median(x) for x in (t_ours, t_one, t_bat))
        ours_tokens = ours.tokens.tolist()
        same_top = sum(o[0] == b[0] for o, b in zip(ours_tokens, bat))
        # Beams with equal scores (to float noise) may come in either order: compare as sets.
        same_all = sum(sorted(ours_tokens[i]) == sorted(beams) for i, beams in one.items())
        print(f"{width:>2} {depth:>2} {1e3 * t_ours:>8.1f} {1e3 * t_one:>14.1f} {1e3 * t_bat:>15.1f} "
              f"{t_one / t_ours:>12.1f} {t_bat / t_ours:>13.1f}  top beam {same_top}/{len(prefixes)} vs batched, "
              f"all W (as sets) {same_all}/{len(one)} vs 1-by-1")

    B, T = 8, 64
    ids = torch.randint(1, 2000, (B, T), generator=g)
    n_pos = B * (T - 1)
    print(f"\namplified_scores at all {n_pos} positions of a {B} x {T} batch (the evaluation's "
          f"workload: every position is a prefix); `generate` one prefix at a time on a sample of "
          f"{args.prefixes} of those positions")
    print(f"{'W':>2} {'D':>2} {'tree ms/pos':>12} {'prefix ms/pos':>14} {'gen ms/pos':>11} {'x prefix':>9} "
          f"{'x gen':>7}  beams identical")
    sample = torch.randperm(n_pos, generator=g)[: args.prefixes].tolist()
    for width, depth in [(4, 2), (4, 3), (8, 3)]:
        t_tree, tree = median_time(lambda: amplified_scores(model, ids, None, None, width, depth), args.repeats)
        t_pref, pref = median_time(lambda: amplified_scores(model, ids, None, None, width, depth, method="prefix"), 1)
        same = (tree["beam_tokens"] == pref["beam_tokens"]).all(-1).all(-1).sum().item()
        rows, ts = tree["rows"].tolist(), tree["ts"].tolist()
        gen_prefixes = [ids[rows[i], : ts[i] + 1].tolist() for i in sample]
        t_gen, gen = median_time(lambda: generate_one_by_one(model, gen_prefixes, width, depth), 1)
        tree_tokens = tree["beam_tokens"].tolist()
        same_gen = sum(sorted(tree_tokens[i]) == sorted(b) for i, b in zip(sample, gen))
        per_tree, per_pref, per_gen = t_tree / n_pos, t_pref / n_pos, t_gen / len(sample)
        print(f"{width:>2} {depth:>2} {1e3 * per_tree:>12.2f} {1e3 * per_pref:>14.2f} {1e3 * per_gen:>11.2f} "
              f"{per_pref / per_tree:>9.1f} {per_gen / per_tree:>7.1f}  {same}/{n_pos} vs prefix, "
              f"{same_gen}/{len(sample)} (as sets) vs generate")


if __name__ == "__main__":
    main()
