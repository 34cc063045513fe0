"""A run killed at a random moment resumes to exactly the leaderboard of an unbroken run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.evaluate import EvalConfig
from benchmark.report import write_leaderboard
from benchmark.runner import evaluate_folder
from benchmark.submissions import write_submission_toml

TINY_EVAL = EvalConfig(size="quick", n_eval=32, max_success=8, max_amp_examples=8, n_boot=50,
                       future_k=1, batch_size=32, lambdas=(0.0, 0.5), amp_width=2, amp_depth=1,
                       beam_width=2)

# The child evaluates every submission in order, as `mesabench evaluate` does.
CHILD = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from benchmark.evaluate import EvalConfig
from benchmark.runner import evaluate_folder
subs, results, cfg = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
cfg = EvalConfig(**{**cfg, "lambdas": tuple(cfg["lambdas"])})
# Warm the slow imports and caches first, so that the kill lands inside the evaluation.
import benchmark.probes, transformers.models.gpt2.modeling_gpt2
from tasks import get_task
get_task("rhymes").generate("dev", cfg.n_eval, cfg.seed)
print("ready", flush=True)
for folder in sorted(subs.iterdir()):
    evaluate_folder(folder, ["rhymes"], cfg, results,
                    on_event=lambda kind, sub, task, detail: print(kind, sub, detail, flush=True))
"""


@pytest.fixture(scope="module")
def submissions(tmp_path_factory, rhymes_tokenizer) -> Path:
    """Three tiny random-init models (different seeds) as submissions."""
    from benchmark.models import new_gpt2

    root = tmp_path_factory.mktemp("resume") / "submissions"
    for seed in range(3):
        folder = root / f"tiny-{seed}"
        model = new_gpt2(rhymes_tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=seed)
        model.save_pretrained(folder / "model", safe_serialization=True)
        rhymes_tokenizer.save_pretrained(folder / "model")
        write_submission_toml(folder, f"tiny-{seed}", f"random init, seed {seed}")
    return root


def start_child(submissions: Path, results: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    cfg = json.dumps(TINY_EVAL.to_dict())
    return subprocess.Popen([sys.executable, "-c", CHILD, str(submissions), str(results), cfg],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def board(results: Path, submissions: Path) -> list[str]:
    """The leaderboard's lines, without the one that names the date and git commit."""
    out = results.parent / f"{results.name}.md"
    write_leaderboard(results, out, submissions)
    return [line for line in out.read_text().splitlines() if not line.startswith("Generated ")]


def test_killed_run_resumes_to_the_same_leaderboard(submissions, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the child: same numbers, and fast on a busy machine
    try:
        events = []
        for folder in sorted(submissions.iterdir()):
            evaluate_folder(folder, ["rhymes"], TINY_EVAL, tmp_path / "unbroken",
                            on_event=lambda kind, *_: events.append(kind))
    finally:
        torch.set_num_threads(threads)

    # The moment to kill: after a seeded random progress event of the second cell (the
    # first cell is finished, the third not started), plus a seeded random delay.
    done = [i for i, kind in enumerate(events) if kind == "done"]
    rng = random.Random(6)
    kill_after = rng.randrange(done[0] + 1, done[1] + 1)
    broken = tmp_path / "broken"
    child = start_child(submissions, broken)
    assert child.stdout.readline().strip() == "ready"
    for _ in range(kill_after + 1):
        child.stdout.readline()
    time.sleep(rng.uniform(0, 0.1))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    finished = {p: p.stat().st_mtime_ns for p in broken.glob("*/*.json")}
    assert broken / "tiny-0" / "rhymes.json" in finished and len(finished) < 3

    child = start_child(submissions, broken)
    child.communicate(timeout=120)
    assert child.returncode == 0
    # Finished cells were kept, not recomputed; the rest were computed.
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())

    assert board(broken, submissions) == board(tmp_path / "unbroken", submissions)
    assert not list(broken.rglob("*.tmp"))  # nothing half-written left behind
    names = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert names(broken) == names(tmp_path / "unbroken")
    assert all(json.loads(p.read_text())["status"] == "ok" for p in broken.glob("*/*.json"))
