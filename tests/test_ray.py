"""The Ray backend: jobs as Ray tasks on a local Ray give what the local worker pool gives.

Skipped when ray is not installed (it is the optional extra ``mesabench[ray]``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from benchmark import pipeline  # noqa: E402
from benchmark.parallel import Backend, BackendError, run_jobs  # noqa: E402
from test_parallel import square_and_report  # noqa: E402

RAY = Backend("ray")

# The Ray workers do not import the test folder: send this module's functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules["test_parallel"])


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module (run_jobs starts it on first use; starting takes ~5 s)."""
    yield
    ray.shutdown()


def test_ray_jobs_keep_job_order_deliver_messages_and_raise():
    messages = []
    assert run_jobs(square_and_report, [3, 1, 2, 5], 2, messages.append, backend=RAY) == [9, 1, 4, 25]
    assert sorted(m[1] for m in messages) == [1, 2, 3, 5]
    assert {m[2] for m in messages} == {1}  # one torch thread per job, as locally
    with pytest.raises(ValueError, match="bad job -1"):
        run_jobs(square_and_report, [2, -1], 2, backend=RAY)
    assert run_jobs(square_and_report, [], 2, backend=RAY) == []


def test_an_unreachable_cluster_is_one_line_at_once():
    ray.shutdown()  # not joined yet, whatever ran before
    with pytest.raises(BackendError, match=r"Ray cluster at 127.0.0.1:1: nothing answers"):
        run_jobs(square_and_report, [1], 1, backend=Backend("ray", "127.0.0.1:1"))


def test_run_on_ray_gives_the_local_run(tmp_path, monkeypatch):
    """`mesabench run --quick --backend ray` against the same command on the local worker
    pool, through the command itself, on tiny configs: the same model bytes for every
    reference, the same result cells (apart from timings) and the same leaderboard."""
    import benchmark.baselines as baselines
    import benchmark.evaluate as evaluate
    from click.testing import CliRunner

    from benchmark.cli import main
    from test_pipeline import TINY_EVAL, TINY_TRAIN, strip_run

    # The configs are made in the parent and travel with the jobs, so patching them here
    # reaches the Ray workers.
    tiny = replace(TINY_TRAIN, steps=10)
    monkeypatch.setattr(baselines, "reference_config",
                        lambda profile, task, variant, seed: replace(tiny, variant=variant, seed=seed, tasks=(task,)))
    small = replace(TINY_EVAL, n_eval=40, max_success=8, max_amp_examples=8, n_boot=50, causal_pairs=20,
                    max_sampled=8)
    # (The training monitor builds its own config with its lookahead: that passes through.)
    monkeypatch.setattr(evaluate, "EvalConfig",
                        lambda size="full", real_files=(), **monitor: replace(small, real_files=real_files, **monitor))
    # One variant stands for all of them (each costs a training and a cell, twice).
    monkeypatch.setattr(pipeline, "VARIANTS", ("unstunted",))
    # Relative paths, as a run has them: a Ray task runs in the parent's folder.
    monkeypatch.chdir(tmp_path)
    Path("none").mkdir()

    def run(home: str, *backend: str) -> dict:
        args = ["run", "--quick", "--task", "rhymes", "--submissions", "none", "--references", f"{home}/refs",
                "--results", f"{home}/results", "--out", f"{home}/leaderboard.md", *backend]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        home = Path(home)
        cells = {f"{f.parent.name}/{f.name}": strip_run(json.loads(f.read_text()))
                 for f in sorted((home / "results").glob("*/*.json"))}
        weights = {f.parent.parent.name: f.read_bytes() for f in (home / "refs").glob("*/*/model.safetensors")}
        return {"cells": cells, "weights": weights, "leaderboard": (home / "leaderboard.md").read_text()}

    local = run("local", "--workers", "1")  # in this process
    on_ray = run("ray", "--backend", "ray", "--workers", "2")
    assert len(local["weights"]) == 2  # the variant and the random-init control
    assert len(local["cells"]) == 2 and "| ref\\-unstunted" in local["leaderboard"]
    assert on_ray == local
