"""Training-step time of every variant as a ratio to the unstunted step, side by side.

    /work/venv/bin/python bench/bench_train_step.py [--repeats 5] [--warmup 2] [--threads 1]

A step is forward + backward + AdamW on a 4-layer × 128 GPT-2, vocab 2,000, batch 32 × 64.
Variants run round-robin (one step each per round), so a change in machine load hits all of
them alike; the median over rounds is reported. Targets: myopic <= 1.5x, stunted <= 3x.
stunted-learned's amplifier retrain (every K steps) is timed apart on K steps' positions
and added to its step, spread over the K.

masked (`benchmark.masked`) runs the same model with bidirectional attention on the same
batch: each row's 8 prompt tokens visible and the rest its completion region (so the
tensors have the same shape), the masking drawn every step. Its real sequences are not the
same length as unstunted's (the region is the task's whole budget of S slots; chess shows
one turn at a time), so ``--task T`` (repeatable) also times both on T's own training batches (batch 16,
the references' layout: `train.collate` against `MaskedObjective.batch`).
"""

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark import masked  # noqa: E402
from benchmark.stunting import StuntConfig, new_amplifier, prepared, training_loss  # noqa: E402

RUNS = [
    ("unstunted", {}),
    ("myopic", {}),
    ("stunted-skip", {}),  # the defaults: W=4, D=2, positions="sample", sample_frac=0.5
    ("stunted-penalty", {}),
    ("stunted-balance", {}),
    ("stunted-sampled", {}),  # v4: M=16 particles of depth D=2, positions="sample" at 0.5
    ("stunted-sampled", {"particles": 64}),
    ("stunted-learned", {}),  # v5: v3's beams + the amplifier, retrained every K=50 steps (amortised)
    ("stunted-learned", {"amplifier_every": 10}),
    ("stunted-skip", {"positions": "sample", "sample_frac": 0.25}),
    ("stunted-skip", {"positions": "all"}),
    ("stunted-penalty", {"positions": "all"}),
    ("stunted-balance", {"positions": "all"}),
    ("stunted-skip", {"positions": "decisions"}),  # one decision point per row
    ("masked", {}),  # bidirectional, k ~ U{1..S} of the S region slots masked
]
PROMPT = 8  # the batch's prompt tokens: no loss, and the masked rows' visible text


def new_model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    # n_positions leaves room for the beams' tokens past the last position (t + D - 1).
    cfg = GPT2Config(vocab_size=2000, n_positions=128, n_embd=128, n_layer=4, n_head=4,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0)
    cfg._attn_implementation = "sdpa"
    return GPT2LMHeadModel(cfg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="1 is steadier on a busy machine")
    parser.add_argument("--task", action="append", default=[],
                        help="also time unstunted and masked on this task's training batches (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 2000, (32, 64), generator=g)
    attn = torch.ones_like(ids)
    lengths = torch.randint(40, 65, (32,), generator=g)
    for i, n in enumerate(lengths.tolist()):  # right padding, as training batches have
        attn[i, n:] = 0
    loss_mask = attn.bool().clone()
    loss_mask[:, :PROMPT] = False  # a prompt
    loss_mask[torch.arange(32), lengths - 1] = False  # the last real token predicts nothing
    decisions = torch.zeros_like(loss_mask)
    decisions[:, 20] = True

    # The masked rows: the same tokens, the prompt visible, the rest of the 64 the region.
    items = [{"ids": row[:n].tolist(), "turns": [PROMPT]} for row, n in zip(ids, lengths.tolist())]
    objective = masked.MaskedObjective(mask_id=1999, eos_id=0, pad_id=0, slots=ids.shape[1] - PROMPT, seed=0)

    setups = []
    stack = contextlib.ExitStack()  # every model stays prepared for the whole benchmark
    for variant, overrides in RUNS:
        cfg = StuntConfig(**overrides)
        fresh = masked.make_masked(new_model(), objective.slots) if variant == "masked" else new_model()
        model = stack.enter_context(prepared(fresh, variant, cfg)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        setups.append((variant, overrides, cfg, model, opt, new_amplifier(variant, cfg, seed=0)))

    def step(variant, cfg, model, opt, amplifier, r: int) -> float:
        start = time.perf_counter()
        if variant == "masked":
            loss, _ = objective.loss(model, items)
        else:
            loss, _ = training_loss(model, variant, ids, attn, loss_mask, cfg, decision_mask=decisions,
                                    amplifier=amplifier)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if amplifier is not None and amplifier.due(r):
            amplifier.retrain(r)
        return time.perf_counter() - start

    times = {i: [] for i in range(len(setups))}
    for r in range(args.warmup + args.repeats):
        for i, (variant, _, cfg, model, opt, amplifier) in enumerate(setups):
            t = step(variant, cfg, model, opt, amplifier, r)
            if r >= args.warmup:
                times[i].append(t)
    # A retrain every K steps is one step's outlier, which a median hides: time it apart
    # and spread it over its K steps.
    retrain = {}
    for i, (variant, _, cfg, _, _, amplifier) in enumerate(setups):
        if amplifier is not None:
            amplifier.rows, amplifier.heldout = [], []
            for _ in range(cfg.amplifier_every):  # a full K steps' worth of positions
                training_loss(setups[i][3], variant, ids, attn, loss_mask, cfg, amplifier=amplifier)
            start = time.perf_counter()
            amplifier.retrain(0)
            retrain[i] = (time.perf_counter() - start) / cfg.amplifier_every

    base = statistics.median(times[0])
    n_tokens = int(loss_mask.sum())
    print(f"train step, 4 layers x 128, vocab 2000, batch 32 x 64 ({n_tokens} loss tokens), "
          f"median of {args.repeats} after {args.warmup} warm-up rounds")
    print(f"{'variant':<18} {'settings':<46} {'step s':>7} {'x unstunted':>12}")
    for i, (variant, overrides, cfg, *_) in enumerate(setups):
        med = statistics.median(times[i]) + retrain.get(i, 0.0)
        search = f"M={cfg.particles}" if variant == "stunted-sampled" else f"W={cfg.width}"
        if variant == "stunted-learned":
            search += f" K={cfg.amplifier_every} H={cfg.amplifier_hidden}"
        settings = "" if not variant.startswith("stunted") else (
            f"{search} D={cfg.depth} positions={cfg.positions}"
            + (f" frac={cfg.sample_frac}" if cfg.positions == "sample" else ""))
        if variant == "masked":
            settings = f"S={objective.slots} slots after {PROMPT} visible tokens"
        print(f"{variant:<18} {settings:<46} {med:>7.3f} {med / base:>12.2f}")
    for task in args.task:
        on_task(task, args.warmup, args.repeats)


def on_task(task_name: str, warmup: int, repeats: int) -> None:
    """unstunted against masked on ``task_name``'s own training batches (the first batches
    of the full profile's seed-0 schedule, one per round, both variants on the same one)."""
    from benchmark.models import new_gpt2, word_tokenizer
    from benchmark.train import TrainConfig, batch_schedule, build_vocabulary, collate, training_data
    from tasks import get_task

    data, models = {}, {}
    for variant in ("unstunted", "masked"):
        cfg = TrainConfig(variant=variant, tasks=(task_name,), size="full")
        tok = word_tokenizer(build_vocabulary(cfg.tasks), masked.MASK_TOKEN if variant == "masked" else None)
        data[variant] = training_data(cfg, tok)[task_name]
        model = new_gpt2(tok, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions, 0).train()
        models[variant] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3), tok)
    model, _, tok = models["masked"]
    slots = masked.slots_for([get_task(task_name)])
    masked.make_masked(model, slots)
    objective = masked.MaskedObjective(tok.mask_token_id, tok.eos_token_id, tok.pad_token_id, slots, seed=0)
    schedule = batch_schedule({task_name: data["unstunted"]}, TrainConfig(tasks=(task_name,), size="full"))
    times = {"unstunted": [], "masked": []}
    tokens = {"unstunted": [], "masked": []}
    for r in range(warmup + repeats):
        idx = schedule[r][1]
        for variant, (model, opt, tok) in models.items():
            items = [data[variant][i] for i in idx]
            if variant == "masked":  # the batch's shape, from a draw of its own (the timed one differs)
                shape = masked.MaskedObjective(0, 0, 0, slots, seed=r).batch(items, torch.device("cpu")).input_ids.shape
            start = time.perf_counter()
            if variant == "masked":
                loss, _ = objective.loss(model, items)
            else:
                b = collate(items, tok.pad_token_id, torch.device("cpu"))
                loss, _ = training_loss(model, "unstunted", b.input_ids, b.attention_mask, b.loss_mask, StuntConfig())
                shape = b.input_ids.shape
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if r >= warmup:
                times[variant].append(time.perf_counter() - start)
                tokens[variant].append(shape[0] * shape[1])
    base = statistics.median(times["unstunted"])
    print(f"\non {task_name}'s training batches (batch 16, the references' layout), median of {repeats}:")
    for variant in times:
        med = statistics.median(times[variant])
        print(f"{variant:<18} {f'mean batch {statistics.mean(tokens[variant]):.0f} tokens':<46} {med:>7.3f} "
              f"{med / base:>12.2f}")


if __name__ == "__main__":
    main()
