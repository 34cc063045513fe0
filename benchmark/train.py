"""Training the reference baselines: a GPT-2 per (variant, seed, task); a config may also
list several tasks, which are then mixed batch by batch.

Every variant sees the same data (drawn with `DATA_SEED`, whatever the model seed), the
same architecture and the same number of steps and tokens; only the loss differs
(`benchmark.stunting`). The loss covers the completion tokens and the end-of-text token,
not the prompt: prompts (a chess board, a constraint) are inputs, not text to imitate.
The masked variant (`benchmark.masked`) is the same GPT-2 with bidirectional attention and a
mask token, trained on the same batches to fill masked completion slots.

The result is an ordinary model folder (safetensors + tokenizer + ``train_log.json``)
written atomically, so a baseline is evaluated exactly like a submission.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from benchmark.models import encode_examples, new_gpt2, pick_device, word_tokenizer
from benchmark.results import TRAIN_LOG
from benchmark.variants import LOSS_VERSIONS, MASKED

if TYPE_CHECKING:
    from benchmark.masked import MaskedObjective
    from benchmark.monitor import Monitor, MonitorConfig

DATA_SEED = 0
TRAINING_SUMMARY = ("min_", "max_", "final_")  # the prefixes of train_log.json's summary figures


@dataclass
class TrainConfig:
    """Everything that decides a reference model; its hash names the run."""

    variant: str = "unstunted"
    seed: int = 0
    tasks: tuple[str, ...] = ()
    size: str = "full"  # which `Task.sizes` entry gives the number of training examples
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 128
    steps: int | None = None  # None: one pass over the training data
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    stunt: dict = field(default_factory=dict)  # overrides of benchmark.stunting.StuntConfig
    tie_embeddings: bool = True  # False: separate output embeddings (`benchmark.models.new_gpt2`)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        if self.tie_embeddings:  # the default is left out, so models trained before it stay cached
            del d["tie_embeddings"]
        if self.variant in LOSS_VERSIONS:
            d["loss_version"] = LOSS_VERSIONS[self.variant]
        return d


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor  # [B, T]: True where the prediction made at t (of t+1) counts
    decision_mask: torch.Tensor  # [B, T]: True at decision positions


def build_vocabulary(task_names: tuple[str, ...]) -> list[str]:
    """The union of the tasks' vocabularies, in a fixed order."""
    from tasks import get_task

    vocab: dict[str, None] = {}
    for name in task_names:
        vocab.update(dict.fromkeys(get_task(name).vocabulary()))
    return list(vocab)


def collate(items: list[dict], pad_id: int, device: torch.device) -> Batch:
    """Right-pad a list of encoded examples into a `Batch`."""
    width = max(len(it["ids"]) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(items), width), dtype=torch.long)
    loss = torch.zeros((len(items), width), dtype=torch.bool)
    dec = torch.zeros((len(items), width), dtype=torch.bool)
    for i, it in enumerate(items):
        ids[i, : len(it["ids"])] = torch.tensor(it["ids"])
        attn[i, : len(it["ids"])] = 1
        loss[i, it["loss"]] = True
        dec[i, it["decisions"]] = True
    return Batch(ids.to(device), attn.to(device), loss.to(device), dec.to(device))


def training_data(cfg: TrainConfig, tokenizer) -> dict[str, list[dict]]:
    """Encoded training examples per task (the same for every variant and seed)."""
    from tasks import get_task

    data = {}
    for name in cfg.tasks:
        task = get_task(name)
        examples = list(task.generate("train", task.sizes[cfg.size][0], DATA_SEED))
        data[name] = encode_examples(tokenizer, examples, add_eos=True)
        if cfg.variant == MASKED:  # where its turns' completion regions begin
            from benchmark.masked import mark_turns

            mark_turns(task, examples, data[name])
    return data


def check_context(data: dict[str, list[dict]], n_positions: int) -> None:
    """Raise ValueError when a training text is longer than the model's context."""
    longest = max(len(it["ids"]) for items in data.values() for it in items)
    if longest > n_positions:
        raise ValueError(f"training text of {longest} tokens exceeds n_positions={n_positions}")


def n_steps(data: dict[str, list[dict]], cfg: TrainConfig) -> int:
    """The configured steps, or one pass over the training data."""
    return cfg.steps if cfg.steps is not None else max(1, sum(map(len, data.values())) // cfg.batch_size)


def batch_schedule(data: dict[str, list[dict]], cfg: TrainConfig) -> list[tuple[str, list[int]]]:
    """Which task and which examples each step uses: one task per batch (so lengths are
    alike and padding is small), examples in shuffled epochs. Deterministic for the model
    seed.

    Each task gets an equal share of the compute, not of the steps: a task is drawn with
    probability inversely proportional to its mean sequence length. (A chess puzzle is
    five times longer than a couplet; drawing by data size spent most of a short budget
    on the one task a small model barely learns.)"""
    rng = random.Random(cfg.seed)
    names = list(data)
    weights = [len(data[n]) / sum(len(it["ids"]) for it in data[n]) for n in names]
    orders = {n: [] for n in names}
    schedule = []
    for _ in range(n_steps(data, cfg)):
        name = rng.choices(names, weights)[0]
        if len(orders[name]) < cfg.batch_size:
            fresh = list(range(len(data[name])))
            rng.shuffle(fresh)
            orders[name].extend(fresh)
        schedule.append((name, orders[name][: cfg.batch_size]))
        del orders[name][: cfg.batch_size]
    return schedule


def learning_rate(step: int, steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up (at most a fifth of the steps), then cosine decay to a tenth."""
    warmup = max(1, min(cfg.warmup, steps // 5))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_reference(
    cfg: TrainConfig, out_dir: Path, progress: Callable[[int, int, float], None] | None = None,
    bottleneck_at: int | None = None, monitor: MonitorConfig | None = None,
) -> Path:
    """Train one reference model and save it as a model folder at ``out_dir`` (atomically).

    ``progress(step, steps, loss)`` is called after every step (the CLI draws a bar).
    ``bottleneck_at``: train a bottleneck model (`benchmark.bottleneck`) at that token.
    ``monitor``: watch the training (`benchmark.monitor`; one task only); its points go
    into train_log.json and the weights are the same as without it.
    """
    from benchmark import masked

    torch.manual_seed(cfg.seed)
    device = pick_device()
    is_masked = cfg.variant == MASKED
    tokenizer = word_tokenizer(build_vocabulary(cfg.tasks), masked.MASK_TOKEN if is_masked else None)
    data = training_data(cfg, tokenizer)
    check_context(data, cfg.n_positions)
    model = new_gpt2(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions, cfg.seed,
                     cfg.tie_embeddings).to(device)
    objective = None
    if is_masked:
        from tasks import get_task

        slots = masked.slots_for([get_task(name) for name in cfg.tasks])
        masked.make_masked(model, slots)
        objective = masked.MaskedObjective(tokenizer.mask_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id,
                                           slots, cfg.seed)
    if bottleneck_at is not None:
        from benchmark.bottleneck import install

        install(model, bottleneck_at)
    watcher = None
    if monitor is not None:
        from benchmark.monitor import Monitor

        if len(cfg.tasks) != 1:
            raise ValueError("the monitor watches a model of one task, not a mixture")
        watcher = Monitor(model, tokenizer, cfg.tasks[0], monitor, cfg.variant, cfg.stunt, cfg.size)
    info = fit(model, data, cfg, tokenizer.pad_token_id, progress, watcher, objective)
    return save_reference(model, tokenizer, cfg, out_dir, info)


def fit(model, data: dict[str, list[dict]], cfg: TrainConfig, pad_id: int,
        progress: Callable[[int, int, float], None] | None = None, monitor: Monitor | None = None,
        objective: MaskedObjective | None = None) -> dict:
    """Train ``model`` in place on encoded examples (`encode_examples`' dicts, per task) with
    ``cfg``'s variant, schedule and optimiser (the masked variant with its ``objective``,
    `benchmark.masked.MaskedObjective`); returns what train_log.json records (seconds,
    the loss log, steps, sequences seen, v3's worst balance figures, v5's amplifier log, and
    the ``monitor``'s points when one watches, measured before the first update and after
    every N-th).

    Summary figures are the top-level keys named ``min_*``, ``max_*`` or ``final_*``
    (`TRAINING_SUMMARY`): a reference's result cells carry them (`benchmark.runner`)."""
    from benchmark.stunting import StuntConfig, new_amplifier, prepared, training_loss

    if (cfg.variant == MASKED) != (objective is not None):
        raise ValueError("the masked variant trains with its objective (benchmark.masked), and only it")
    device = next(model.parameters()).device
    stunt = StuntConfig(**cfg.stunt)
    # v5's amplifier (None for every other variant): its own optimiser and seeded generator.
    amplifier = new_amplifier(cfg.variant, stunt, cfg.seed, n_steps(data, cfg))
    amplifier_log: list[dict] = []
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    log: list[dict] = []
    extremes: dict[str, float] = {}
    start = time.time()
    model.train()
    steps = n_steps(data, cfg)
    if monitor:
        monitor.after(0, steps)  # the initial model
    # Inside `prepared` the variant's training-time device (myopic attention) is installed;
    # it is gone when the block ends, so the saved model is an ordinary GPT-2. (The monitor
    # measures a myopic model through it: its forward equals ordinary attention.)
    with prepared(model, cfg.variant, stunt):
        for step, (name, idx) in enumerate(batch_schedule(data, cfg)):
            items = [data[name][i] for i in idx]
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, steps, cfg)
            if objective is not None:
                loss, stats = objective.loss(model, items)
            else:
                batch = collate(items, pad_id, device)
                loss, stats = training_loss(model, cfg.variant, batch.input_ids, batch.attention_mask,
                                            batch.loss_mask, stunt, decision_mask=batch.decision_mask,
                                            amplifier=amplifier)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at step {step} ({cfg.variant})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if amplifier is not None and amplifier.due(step):
                amplifier_log.append(amplifier.retrain(step))
            for key, worst in (("balance_ess", min), ("balance_residual", max)):
                if key in stats:  # v3's guarantees, over every step, not only the logged ones
                    extremes[key] = worst(extremes.get(key, stats[key]), stats[key])
            if step % 50 == 0 or step == steps - 1:
                log.append({"step": step, "task": name, "loss": round(loss.item(), 5),
                            **{k: round(float(v), 5) for k, v in stats.items()}})
            if monitor:
                monitor.after(step + 1, steps)
            if progress:
                progress(step + 1, steps, loss.item())
    seconds = time.time() - start  # the monitor's time included (its own is in its log)
    summary = {f"{'min' if k.endswith('ess') else 'max'}_{k}": round(v, 5) for k, v in extremes.items()}
    if amplifier_log:  # the amplifier's own held-out gain over the model, at every retrain
        summary.update({"amplifier": amplifier_log, "final_amplifier_gain": amplifier_log[-1]["heldout_gain"]})
    return {"seconds": round(seconds, 1), "log": log, "steps": steps, "sequences_seen": steps * cfg.batch_size,
            **summary, **({"monitor": monitor.log()} if monitor else {})}


def training_summary(log: dict) -> dict[str, float]:
    """The summary figures of a train_log.json (`fit`): v3-v5's worst balance figures, v5's
    final amplifier gain; {} for a variant that records none."""
    return {k: float(v) for k, v in log.items() if k.startswith(TRAINING_SUMMARY) and isinstance(v, (int, float))}


def save_reference(model, tokenizer, cfg, out_dir: Path, info: dict) -> Path:
    """Write the model folder to a temporary sibling, then rename it into place; ``cfg`` (a
    `TrainConfig`, or any config with ``to_dict``) goes into train_log.json."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / TRAIN_LOG).write_text(json.dumps({"config": cfg.to_dict(), **info}, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
