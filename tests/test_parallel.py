"""The worker pool: results in job order, messages reach the parent, errors surface."""

import pytest

from benchmark.parallel import run_jobs


def square_and_report(job: int, emit) -> int:
    import torch

    emit(("seen", job, torch.get_num_threads()))
    if job < 0:
        raise ValueError(f"bad job {job}")
    return job * job


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_job_order_and_messages_forwarded(workers):
    messages = []
    out = run_jobs(square_and_report, [3, 1, 2, 5], workers, messages.append)
    assert out == [9, 1, 4, 25]
    assert sorted(m[1] for m in messages) == [1, 2, 3, 5]
    # Every job runs on one torch thread, so numbers do not depend on the worker count.
    assert {m[2] for m in messages} == {1}


def test_a_failing_job_raises_in_the_parent():
    with pytest.raises(ValueError, match="bad job -1"):
        run_jobs(square_and_report, [2, -1], 2)


def test_default_workers(monkeypatch):
    from benchmark.parallel import default_workers
    from tasks.base import usable_cores

    monkeypatch.setenv("MESABENCH_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("MESABENCH_WORKERS", "")
    assert default_workers() == usable_cores() >= 1
