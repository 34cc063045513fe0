"""The reference baselines the harness trains: unstunted, myopic and three stunted variants
(plus a random-init model of the same architecture), each saved as a submission.

A baseline lives in ``submissions/ref-<variant>-s<seed>/`` with its ``submission.toml``
and ``model/`` folder (weights are git-ignored). Training is skipped when the folder
already holds a model trained with the same config, so an interrupted ``baselines train``
resumes with the next unfinished model.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from benchmark.submissions import write_submission_toml
from benchmark.train import TrainConfig, build_vocabulary, save_reference, train_reference

VARIANTS = ("unstunted", "myopic", "stunted-skip", "stunted-penalty", "stunted-balance")
RANDOM_INIT = "ref-random-init"

# Embedded defaults: "full" is the default run, "quick" a smoke run of the same pipeline.
PROFILES = {
    "full": {"train": TrainConfig(size="full", steps=3000), "seeds": (0, 1, 2)},
    "quick": {"train": TrainConfig(size="quick", steps=400), "seeds": (0,)},
}


def reference_name(variant: str, seed: int) -> str:
    return f"ref-{variant}-s{seed}"


def _trained_with(model_dir: Path) -> dict | None:
    try:
        return json.loads((model_dir / "train_log.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return None


def train_baselines(
    profile: str, tasks: tuple[str, ...], submissions_dir: Path,
    variants: tuple[str, ...] = VARIANTS, seeds: tuple[int, ...] | None = None,
    on_model: Callable[[str, str], None] = lambda name, status: None,
    progress: Callable[[int, int, float], None] | None = None,
) -> list[str]:
    """Train every (variant, seed) not already trained with this config; returns names."""
    base = PROFILES[profile]["train"]
    names = []
    for seed in seeds if seeds is not None else PROFILES[profile]["seeds"]:
        for variant in variants:
            cfg = replace(base, variant=variant, seed=seed, tasks=tuple(tasks))
            name = reference_name(variant, seed)
            folder = Path(submissions_dir) / name
            names.append(name)
            if _trained_with(folder / "model") == cfg.to_dict():
                on_model(name, "cached")
                continue
            on_model(name, "training")
            folder.mkdir(parents=True, exist_ok=True)
            train_reference(cfg, folder / "model", progress)
            write_submission_toml(folder, name, f"reference baseline: {variant}, seed {seed}",
                                  reference={"variant": variant, "seed": seed, "profile": profile})
            on_model(name, "done")
    return names


def write_random_init(profile: str, tasks: tuple[str, ...], submissions_dir: Path, seed: int = 0) -> str:
    """Save an untrained model of the reference architecture: the floor every metric must beat."""
    from benchmark.models import new_gpt2, word_tokenizer

    cfg = replace(PROFILES[profile]["train"], variant="random-init", seed=seed, tasks=tuple(tasks),
                  steps=0)
    folder = Path(submissions_dir) / RANDOM_INIT
    if _trained_with(folder / "model") != cfg.to_dict():
        tokenizer = word_tokenizer(build_vocabulary(cfg.tasks))
        model = new_gpt2(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions, seed + 1000)
        folder.mkdir(parents=True, exist_ok=True)
        save_reference(model, tokenizer, cfg, folder / "model", {"seconds": 0.0, "log": []})
        write_submission_toml(folder, RANDOM_INIT, "control: untrained model of the reference "
                              "architecture", reference={"variant": "random-init", "seed": seed,
                                                         "profile": profile})
    return RANDOM_INIT
