"""Training-step time of every variant as a ratio to the unstunted step, side by side.

    /work/venv/bin/python bench/bench_train_step.py [--repeats 5] [--warmup 2] [--threads 1]

A step is forward + backward + AdamW on a 4-layer × 128 GPT-2, vocab 2,000, batch 32 × 64.
Variants run round-robin (one step each per round), so a change in machine load hits all of
them alike; the median over rounds is reported. Targets: myopic <= 1.5x, stunted <= 3x.
stunted-learned's amplifier retrain (every K steps) is timed apart on K steps' positions
and added to its step, spread over the K.
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
]


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 2000, (32, 64), generator=g)
    attn = torch.ones_like(ids)
    lengths = torch.randint(40, 65, (32,), generator=g)
    for i, n in enumerate(lengths.tolist()):  # right padding, as training batches have
        attn[i, n:] = 0
    loss_mask = attn.bool().clone()
    loss_mask[:, :8] = False  # a prompt
    loss_mask[torch.arange(32), lengths - 1] = False  # the last real token predicts nothing
    decisions = torch.zeros_like(loss_mask)
    decisions[:, 20] = True

    setups = []
    stack = contextlib.ExitStack()  # every model stays prepared for the whole benchmark
    for variant, overrides in RUNS:
        cfg = StuntConfig(**overrides)
        model = stack.enter_context(prepared(new_model(), variant, cfg)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        setups.append((variant, overrides, cfg, model, opt, new_amplifier(variant, cfg, seed=0)))

    def step(variant, cfg, model, opt, amplifier, r: int) -> float:
        start = time.perf_counter()
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
        print(f"{variant:<18} {settings:<46} {med:>7.3f} {med / base:>12.2f}")


if __name__ == "__main__":
    main()
