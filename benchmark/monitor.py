"""The training monitor: while a reference model trains, every N steps, the amplification
gain and the plan-probe selectivity of the checkpoint, on dev data.

Each point is measured with the evaluation's own code (`benchmark.evaluate`:
`token_scores` and `amplification_gain` for the gain, `decision_rows` and `plan_probes` for
the selectivity with its controls) on the model in memory, so a point at the last step is
what evaluating the saved model on the same data gives. What differs from an evaluation:

- the data is the **dev** split only, never test: the gain's λ is chosen on the first half
  of the gain examples and the gain is scored on the second half; the probes train on the
  first half of the probe examples and are scored on the second half;
- the search is a **dev lookahead** that stunting does not use: depth 3 where the stunted
  losses search to depth 2 (`MonitorConfig.depth`, checked by `check_dev_lookahead`), so a
  stunted model is watched with a search it was not trained against;
- only the task's first target is probed (the one the lookahead index uses);
- a masked model (`benchmark.masked`) has no gain to measure (no next-token distribution):
  its points hold the probe only.

The monitor must not change what is trained: it runs without gradient, in eval mode (the
model's mode restored after), and saves and restores every random generator around each
point (building the random-init control reseeds torch), so the weights are bit-identical
with the monitor on or off (`tests/test_monitor.py`). Its settings are therefore not part
of the training config's key.
"""

from __future__ import annotations

import copy
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch

SPLIT = "dev"  # the monitor never reads the test split


@dataclass(frozen=True)
class MonitorConfig:
    """How often and on how much data the monitor measures (not part of the training key:
    it does not change the weights; no torch here, so profiles can name one at start-up).
    Defaults measured with bench/bench_monitor.py (docs/design.md)."""

    points: int = 3  # besides step 0: one every ceil(steps / points) steps, and the last step
    gain_examples: int = 64  # dev examples amplified: half choose λ, half score the gain
    probe_examples: int = 200  # dev examples probed: half train the probes, half score them
    width: int = 4  # W of the dev lookahead (stunting's and the evaluation's W)
    depth: int = 3  # D of the dev lookahead: deeper than stunting's D = 2
    seed: int = 0  # data seed of the dev examples; bootstrap and probe seed
    n_boot: int = 200  # bootstrap resamples of the intervals

    def every(self, steps: int) -> int:
        """N: the steps between two points of a training of ``steps`` steps."""
        return max(1, -(-steps // self.points))

    def due(self, step: int, steps: int) -> bool:
        """Whether to measure after ``step`` updates of ``steps`` (0 is the initial model)."""
        return step % self.every(steps) == 0 or step == steps

    def to_dict(self) -> dict:
        return {**asdict(self), "split": SPLIT}


def check_dev_lookahead(cfg: MonitorConfig, variant: str, stunt: dict) -> None:
    """Raise ValueError when the monitor would search as ``variant``'s stunting does: a
    stunted model is trained against that very search, so it must be watched with another."""
    from benchmark.stunting import StuntConfig

    depth = StuntConfig(**stunt).depth
    if variant.startswith("stunted") and cfg.depth == depth:
        raise ValueError(f"the monitor searches to depth {cfg.depth}, as {variant} trains against; "
                         "give the monitor another depth")


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Every random generator the training may read (torch, CUDA, python, numpy) as it was
    before the block, whatever the block draws or reseeds."""
    import numpy as np
    import torch

    states = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def eval_config(cfg: MonitorConfig):
    """The `EvalConfig` the evaluation's metric code reads, with the monitor's lookahead,
    seed and bootstrap."""
    from benchmark.evaluate import EvalConfig

    return EvalConfig(seed=cfg.seed, amp_width=cfg.width, amp_depth=cfg.depth, n_boot=cfg.n_boot)


def dev_examples(task, cfg: MonitorConfig, size: str) -> tuple[list[dict], list[dict]]:
    """The monitor's dev examples: (gain examples, probe examples), the first examples of
    one dev draw (the two metrics may share examples; neither sees test). A task whose data
    is cached on disk (chess) is read from the evaluation's dev split of profile ``size``,
    the count that is cached: another count would run its slow generator."""
    n = max(cfg.gain_examples, cfg.probe_examples)
    if task.disk_cached:
        n = task.sizes[size][1] * task.dev_factor
    examples = list(task.generate(SPLIT, n, cfg.seed))
    return examples[: cfg.gain_examples], examples[: cfg.probe_examples]


def measure(loaded, control, task, gain_examples: list[dict], probe_examples: list[dict],
            cfg: MonitorConfig) -> dict:
    """One monitor point of ``loaded`` (a `LoadedModel`, in memory or from a folder):
    the amplification gain (λ chosen on the first half of ``gain_examples``, scored on the
    second; None for a masked model) and the plan probe of the task's first target (trained on the first half of
    ``probe_examples``, scored on the second), against ``control``, a random-init model."""
    from benchmark.evaluate import (StateCache, amplification_gain, decision_rows, plan_probes, solver,
                                    token_scores)

    ecfg = eval_config(cfg)
    gain = None
    if not loaded.masked:
        scores = token_scores(loaded, task, gain_examples, ecfg)
        half = len(scores) // 2
        gain = amplification_gain(scores[:half], scores[half:], ecfg)
    completions = task.play(probe_examples, solver(loaded, task.max_words, 1, ecfg.batch_size))
    half = len(probe_examples) // 2
    train_rows = decision_rows(task, probe_examples[:half], completions[:half])
    test_rows = decision_rows(task, probe_examples[half:], completions[half:])
    probe = plan_probes(loaded, control, task, train_rows, test_rows, ecfg, StateCache(ecfg.batch_size),
                        names=task.target_names[:1])
    return {"split": SPLIT, "seed": cfg.seed, "amplification_gain": gain, "plan_probe": probe}


class Monitor:
    """Watches one model while it trains on one task: `fit` calls `after` after every
    update (and with step 0 before the first); `log` is what train_log.json stores."""

    def __init__(self, model: torch.nn.Module, tokenizer, task_name: str, cfg: MonitorConfig,
                 variant: str, stunt: dict, size: str = "full"):
        from benchmark.models import LoadedModel, random_init_like
        from tasks import get_task

        check_dev_lookahead(cfg, variant, stunt)
        self.cfg, self.task = cfg, get_task(task_name)
        # A copy: encoding a padded batch stores padding and truncation in a fast tokenizer,
        # which would then be saved into the model folder's tokenizer.json (a new model hash).
        self.loaded = LoadedModel(model=model, tokenizer=copy.deepcopy(tokenizer), path=Path("."))
        with preserved_rng():
            self.gain_examples, self.probe_examples = dev_examples(self.task, cfg, size)
            # Built now, from the untouched config: the evaluation's control (seed = its seed).
            self.control = random_init_like(self.loaded, seed=cfg.seed)
        self.points: list[dict] = []
        self.steps = 0

    def after(self, step: int, steps: int) -> None:
        """Measure the model after ``step`` updates if the config says so."""
        self.steps = steps
        if not self.cfg.due(step, steps):
            return
        import torch
        from threadpoolctl import threadpool_limits

        from benchmark.amplify import eval_mode

        start = time.time()
        # BLAS (the probe fits) gets the training's threads: a library loaded after the
        # worker limited its threads (scipy's) would otherwise take every core, and on a
        # busy 2-core machine its probe fits ran ten times slower.
        with preserved_rng(), torch.no_grad(), eval_mode(self.loaded.model), \
                threadpool_limits(torch.get_num_threads()):
            point = measure(self.loaded, self.control, self.task, self.gain_examples, self.probe_examples,
                            self.cfg)
        self.points.append({"step": step, "seconds": round(time.time() - start, 2), **point})

    def log(self) -> dict:
        """The monitor's part of train_log.json: its config, its points and its seconds."""
        return {"config": self.cfg.to_dict(), "task": self.task.name, "every": self.cfg.every(self.steps),
                "seconds": round(sum(p["seconds"] for p in self.points), 1), "points": self.points}


def monitor_log(model_dir: Path) -> dict | None:
    """The monitor's log in a model folder's train_log.json (None: the model was trained
    before the monitor, or not here, or the file is unreadable)."""
    from benchmark.results import train_log

    return (train_log(model_dir) or {}).get("monitor")
