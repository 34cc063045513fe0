"""The reference baselines the harness trains: unstunted, myopic and three stunted variants
(plus a random-init model of the same architecture), each saved as a submission.

A baseline lives in ``submissions/ref-<variant>-s<seed>/``: its ``submission.toml`` and one
model folder per task, ``model-<task>/`` (weights are git-ignored). One small model per
task, not one model for all: on this budget a multi-task model learned rhymes to 70%
where a rhymes-only model of the same cost reached 92%. Every model trains for one pass
over its task's training set, so the task's `sizes` set its budget. Training is skipped
when a folder already holds a model trained with the same config, so an interrupted run
resumes with the next unfinished model.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from benchmark.submissions import write_submission_toml
from benchmark.train import DATA_SEED, TrainConfig, build_vocabulary, save_reference, train_reference
from benchmark.variants import RANDOM_INIT, RANDOM_INIT_VARIANT, VARIANTS, reference_name
from tasks import get_task


# Embedded defaults: "full" is the default run, "quick" a smoke run of the same pipeline.
PROFILES = {
    "full": {"train": TrainConfig(size="full"), "seeds": (0, 1, 2)},
    "quick": {"train": TrainConfig(size="quick"), "seeds": (0,)},
}


def model_folder(task: str) -> str:
    """The folder, inside a reference submission, of the model trained on ``task``."""
    return f"model-{task}"


def _trained_with(model_dir: Path) -> dict | None:
    try:
        return json.loads((model_dir / "train_log.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return None


def train_baselines(
    profile: str, tasks: tuple[str, ...], submissions_dir: Path,
    variants: tuple[str, ...] = VARIANTS, seeds: tuple[int, ...] | None = None,
    on_model: Callable[[str, str], None] = lambda name, status: None,
    progress: Callable[[str, int, int, float], None] | None = None, workers: int = 1,
    init: Callable[[], None] | None = None,
) -> list[str]:
    """Train every (variant, seed, task) model not already trained with this config, on up
    to ``workers`` processes; returns the names of all requested reference submissions.

    ``on_model(label, status)`` reports "cached", "training" and "done" per model (label
    ``<name>/<task>``); ``progress(label, step, steps, loss)`` reports training steps.
    """
    from benchmark.parallel import run_jobs

    base = PROFILES[profile]["train"]
    names, jobs = [], []
    for seed in seeds if seeds is not None else PROFILES[profile]["seeds"]:
        for variant in variants:
            name = reference_name(variant, seed)
            folder = Path(submissions_dir) / name
            names.append(name)
            folder.mkdir(parents=True, exist_ok=True)
            write_submission_toml(folder, name, f"reference baseline: {variant}, seed {seed}",
                                  {t: model_folder(t) for t in tasks},
                                  reference={"variant": variant, "seed": seed, "profile": profile})
            for task in tasks:
                cfg = replace(base, variant=variant, seed=seed, tasks=(task,))
                label = f"{name}/{task}"
                if _trained_with(folder / model_folder(task)) == cfg.to_dict():
                    on_model(label, "cached")
                else:
                    jobs.append({"label": label, "cfg": cfg, "out": folder / model_folder(task)})

    def on_message(message: tuple) -> None:
        kind, label, *rest = message
        if kind == "step":
            if progress:
                progress(label, *rest)
        else:
            on_model(label, kind)

    # Generate (and cache) a slow task's training data here, once, before the workers
    # start: chess would otherwise run in every worker at the same time.
    for task in map(get_task, sorted({job["cfg"].tasks[0] for job in jobs})):
        if task.disk_cached:
            task.generate("train", task.sizes[base.size][0], DATA_SEED)
    # Longest jobs first (chess sequences are the longest), so no worker idles at the end.
    jobs.sort(key=lambda job: job["cfg"].tasks[0] != "chess-mate")
    run_jobs(train_job, jobs, workers, on_message, init)
    return names


def train_job(job: dict, emit: Callable[[tuple], None]) -> str:
    """Train one reference model into its folder (runs in a worker process)."""
    label, cfg = job["label"], job["cfg"]
    emit(("training", label))

    def on_step(step: int, steps: int, loss: float) -> None:
        if step % max(1, steps // 100) == 0 or step == steps:
            emit(("step", label, step, steps, loss))

    train_reference(cfg, Path(job["out"]), on_step)
    emit(("done", label))
    return label


def write_random_init(profile: str, tasks: tuple[str, ...], submissions_dir: Path, seed: int = 0) -> str:
    """Save untrained models of the reference architecture (one per task, for its
    vocabulary): the floor every metric must beat."""
    from benchmark.models import new_gpt2, word_tokenizer

    folder = Path(submissions_dir) / RANDOM_INIT
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        cfg = replace(PROFILES[profile]["train"], variant=RANDOM_INIT_VARIANT, seed=seed, tasks=(task,), steps=0)
        out = folder / model_folder(task)
        if _trained_with(out) != cfg.to_dict():
            tokenizer = word_tokenizer(build_vocabulary(cfg.tasks))
            model = new_gpt2(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions, seed + 1000)
            save_reference(model, tokenizer, cfg, out, {"seconds": 0.0, "log": []})
    write_submission_toml(folder, RANDOM_INIT, "control: untrained model of the reference architecture",
                          {t: model_folder(t) for t in tasks},
                          reference={"variant": RANDOM_INIT_VARIANT, "seed": seed, "profile": profile})
    return RANDOM_INIT
