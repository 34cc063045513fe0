"""A run killed at a random moment resumes to exactly the leaderboard of an unbroken run."""

import json
import multiprocessing
import os
import random
import signal
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


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run far faster single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def evaluate_all(submissions: Path, results: Path, on_event=lambda *a: None) -> None:
    """What `mesabench evaluate` does: every submission in order."""
    for folder in sorted(submissions.iterdir()):
        evaluate_folder(folder, ["rhymes"], TINY_EVAL, results, on_event=on_event)


def child_run(submissions: Path, results: Path, conn) -> None:
    """The run to be killed; it reports each progress event to the parent."""
    evaluate_all(submissions, results, lambda kind, *_: conn.send(kind))


def board(results: Path, submissions: Path) -> list[str]:
    """The leaderboard's lines, without the one that names the date and git commit."""
    out = results.parent / f"{results.name}.md"
    write_leaderboard(results, out, submissions)
    return [line for line in out.read_text().splitlines() if not line.startswith("Generated ")]


def test_killed_run_resumes_to_the_same_leaderboard(submissions, tmp_path):
    events = []
    evaluate_all(submissions, tmp_path / "unbroken", lambda kind, *_: events.append(kind))

    # Kill after a seeded random progress event of the second cell (the first cell is
    # finished, the third not started), then a seeded random delay. The child is a fork
    # of this process, so it starts without paying the imports again.
    done = [i for i, kind in enumerate(events) if kind == "done"]
    rng = random.Random(6)
    kill_after = rng.randrange(done[0] + 1, done[1] + 1)
    broken = tmp_path / "broken"
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=child_run,
                                                        args=(submissions, broken, send))
    child.start()
    for _ in range(kill_after + 1):
        assert receive.poll(60), "the child stopped reporting"
        receive.recv()
    receive.poll(rng.uniform(0, 0.2))
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    finished = {p: p.stat().st_mtime_ns for p in broken.glob("*/*.json")}
    assert broken / "tiny-0" / "rhymes.json" in finished and len(finished) < 3

    resumed = []
    evaluate_all(submissions, broken, lambda kind, sub, *_: resumed.append((kind, sub)))
    # Finished cells were kept, not recomputed; the rest were computed.
    assert ("cached", "tiny-0") in resumed and ("done", "tiny-2") in resumed
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())

    assert board(broken, submissions) == board(tmp_path / "unbroken", submissions)
    assert not list(broken.rglob("*.tmp"))  # nothing half-written left behind
    names = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert names(broken) == names(tmp_path / "unbroken")
    # Beneath the rounded leaderboard, every stored number agrees too ("run" holds timings).
    for path in broken.glob("*/*"):
        twin = tmp_path / "unbroken" / path.relative_to(broken)
        if path.suffix == ".json":
            mine, theirs = json.loads(path.read_text()), json.loads(twin.read_text())
            assert mine["status"] == "ok" and mine.pop("run") and theirs.pop("run")
            assert mine == theirs, path.name
        else:
            assert path.read_text() == twin.read_text(), path.name
