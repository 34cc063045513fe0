"""The reference baselines the harness trains: unstunted, myopic, five stunted variants and a
masked one (plus a random-init model of the same architecture), each saved as a submission.

A baseline lives in ``submissions/ref-<variant>-s<seed>/``: its ``submission.toml`` and one
model folder per task, ``model-<task>/`` (weights are git-ignored). One small model per
task, not one model for all: on this budget a multi-task model learned rhymes to 70%
where a rhymes-only model of the same cost reached 92%. Every model trains for one pass
over its task's training set, so the task's `sizes` set its budget. Training is skipped
when a folder already holds a model trained with the same config, so an interrupted run
resumes with the next unfinished model. `benchmark.pipeline` runs the training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from benchmark.monitor import MonitorConfig
from benchmark.results import train_log
from benchmark.submissions import write_submission_toml
from benchmark.train import TrainConfig, build_vocabulary, save_reference, train_reference
from benchmark.variants import RANDOM_INIT, RANDOM_INIT_VARIANT, VARIANTS, reference_name
from tasks import get_task


# Embedded defaults: "full" is the default run (38.5 min on 2 cores, measured; README),
# "quick" a smoke run of the same pipeline, "long" the budget at which every task is
# learned (docs/experiments/). ``tasks`` overrides the training config per task (e.g. more
# steps than one pass); `reference_config` applies it. ``monitor`` watches every reference
# as it trains (`benchmark.monitor`; not part of the training key, the weights are the same),
# with per-task overrides in ``monitor_tasks`` (`monitor_config`); its cost was measured
# with bench/bench_monitor.py (docs/design.md).
PROFILES = {
    "full": {"train": TrainConfig(size="full"), "seeds": (0, 1, 2), "tasks": {}, "monitor": MonitorConfig(),
             # 125 steps of long puzzles train in ~17 s; four points of the default cost 12 s.
             "monitor_tasks": {"chess-mate": {"points": 1, "gain_examples": 32, "probe_examples": 100}}},
    "quick": {"train": TrainConfig(size="quick"), "seeds": (0,), "tasks": {},
              "monitor": MonitorConfig(points=1, gain_examples=32, probe_examples=100), "monitor_tasks": {}},
    "long": {"train": TrainConfig(size="long"), "seeds": (0, 1, 2), "monitor": MonitorConfig(), "monitor_tasks": {},
             "tasks": {
        # docs/experiments/constrained_budget.py: 100k examples for 10k steps reached 34-46%
        # where one pass over 10k reached 0.3%; untied output embeddings make the copy of the
        # slot word exact (52%) and 8 heads brought end-rhyme from 21 to 65 (58%).
        "constrained": {"steps": 10000, "tie_embeddings": False, "n_head": 8},
    }},
}


def reference_config(profile: str, task: str, variant: str, seed: int) -> TrainConfig:
    """The training config of the ``profile``'s reference of ``variant`` and ``seed`` on ``task``."""
    entry = PROFILES[profile]
    return replace(entry["train"], variant=variant, seed=seed, tasks=(task,), **entry["tasks"].get(task, {}))


def monitor_config(profile: str, task: str) -> MonitorConfig:
    """How the ``profile``'s references of ``task`` are watched as they train."""
    entry = PROFILES[profile]
    return replace(entry["monitor"], **entry["monitor_tasks"].get(task, {}))


def model_folder(task: str) -> str:
    """The folder, inside a reference submission, of the model trained on ``task``."""
    return f"model-{task}"


def trained_with(model_dir: Path) -> dict | None:
    """The training config a model folder was trained with (None: none, or unreadable)."""
    return (train_log(model_dir) or {}).get("config")


@dataclass
class TrainingPlan:
    """What `plan_training` found: the reference submissions asked for, the models already
    trained with their config, and the models left to train."""

    names: list[str]  # every requested reference submission, e.g. "ref-myopic-s0"
    cached: list[str]  # "<name>/<task>" of each model already trained with this config
    jobs: list[dict]  # `train_job` inputs, the longest first


def plan_training(profile: str, tasks: tuple[str, ...], submissions_dir: Path,
                  variants: tuple[str, ...] = VARIANTS, seeds: tuple[int, ...] | None = None) -> TrainingPlan:
    """Write the submission.toml of every (variant, seed) reference and list the models not
    yet trained with this profile's config (one per task)."""
    plan = TrainingPlan([], [], [])
    for seed in seeds if seeds is not None else PROFILES[profile]["seeds"]:
        for variant in variants:
            name = reference_name(variant, seed)
            folder = Path(submissions_dir) / name
            plan.names.append(name)
            folder.mkdir(parents=True, exist_ok=True)
            write_submission_toml(folder, name, f"reference baseline: {variant}, seed {seed}",
                                  {t: model_folder(t) for t in tasks},
                                  reference={"variant": variant, "seed": seed, "profile": profile})
            for task in tasks:
                cfg = reference_config(profile, task, variant, seed)
                label = f"{name}/{task}"
                if trained_with(folder / model_folder(task)) == cfg.to_dict():
                    plan.cached.append(label)
                else:
                    plan.jobs.append({"label": label, "cfg": cfg, "out": folder / model_folder(task),
                                      "monitor": monitor_config(profile, task)})
    # Longest first, so no worker idles at the end while one long job finishes.
    plan.jobs.sort(key=lambda job: -training_cost(job["cfg"]))
    return plan


def training_cost(cfg: TrainConfig) -> int:
    """About how many tokens training ``cfg`` reads: what orders the jobs (a chess puzzle is
    much longer than a couplet, but rhymes has many more training examples)."""
    tasks = [get_task(name) for name in cfg.tasks]
    tokens = sum(task.example_tokens for task in tasks) / len(tasks)
    if cfg.steps is not None:
        return int(cfg.steps * cfg.batch_size * tokens)
    return int(sum(task.sizes[cfg.size][0] for task in tasks) * tokens)


def train_job(job: dict, emit: Callable[[tuple], None]) -> str:
    """Train one model into its folder (runs in a worker process): a reference, or the
    pretrained stand-in's submission when the job has a ``standin`` config
    (`benchmark.standin`), so a run trains both on the same workers."""
    label, cfg = job["label"], job.get("cfg")
    emit(("training", label))

    def on_step(step: int, steps: int, loss: float) -> None:
        if step % max(1, steps // 100) == 0 or step == steps:
            emit(("step", label, step, steps, loss))

    if "standin" in job:
        from benchmark.standin import write_submission

        write_submission(Path(job["out"]), job["standin"], on_step)
    else:
        train_reference(cfg, Path(job["out"]), on_step, bottleneck_at=job.get("bottleneck_at"),
                        monitor=job.get("monitor"))
    emit(("done", label))
    return label


def write_random_init(profile: str, tasks: tuple[str, ...], submissions_dir: Path, seed: int = 0) -> str:
    """Save untrained models of the reference architecture (one per task, for its
    vocabulary): the floor every metric must beat."""
    from benchmark.models import new_gpt2, word_tokenizer

    folder = Path(submissions_dir) / RANDOM_INIT
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        cfg = replace(reference_config(profile, task, RANDOM_INIT_VARIANT, seed), steps=0)
        out = folder / model_folder(task)
        if trained_with(out) != cfg.to_dict():
            tokenizer = word_tokenizer(build_vocabulary(cfg.tasks))
            model = new_gpt2(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions, seed + 1000,
                             cfg.tie_embeddings)
            save_reference(model, tokenizer, cfg, out, {"seconds": 0.0, "log": []})
    write_submission_toml(folder, RANDOM_INIT, "control: untrained model of the reference architecture",
                          {t: model_folder(t) for t in tasks},
                          reference={"variant": RANDOM_INIT_VARIANT, "seed": seed, "profile": profile})
    return RANDOM_INIT
