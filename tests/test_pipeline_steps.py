"""benchmark.pipeline: workspaces, locating submissions, pre-generation, the job lists of
training and evaluation, and a whole run, with the expensive work replaced by fakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmark.baselines as baselines
import benchmark.runner as runner
from benchmark import pipeline
from benchmark.pipeline import EvalEvent, TrainEvent
from benchmark.runner import CellOutcome
from benchmark.submissions import write_submission_toml
from benchmark.variants import RANDOM_INIT, VARIANTS


def test_workspaces_keep_every_profile_but_full_apart():
    full = pipeline.workspace()
    assert (full.references, full.results, full.leaderboard) == (
        Path("submissions"), Path("results"), Path("leaderboard.md"))
    assert full.submission_dirs == [Path("submissions")] and full.profile == "full"
    quick = pipeline.workspace("quick")
    assert quick.references == Path("runs/quick/references") and quick.profile == "quick" and quick.quick
    assert quick.submission_dirs == [Path("submissions"), Path("runs/quick/references")]
    long = pipeline.workspace("long")
    assert (long.references, long.results, long.leaderboard) == (
        Path("runs/long/references"), Path("runs/long/results"), Path("runs/long/leaderboard.md"))
    assert pipeline.workspace("quick", results=Path("r")).results == Path("r")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        pipeline.workspace("huge")


def test_unknown_tasks_are_named():
    assert pipeline.task_list(()) == ["rhymes", "chess-mate", "constrained", "rhymes-natural", "constrained-natural",
                                       "chess-mate-natural"]
    with pytest.raises(ValueError, match="poetry"):
        pipeline.task_list(("rhymes", "poetry"))


def submission(folder: Path) -> Path:
    folder.mkdir(parents=True)
    write_submission_toml(folder, folder.name, "test")
    return folder


def test_submission_folders(tmp_path):
    subs, refs = tmp_path / "subs", tmp_path / "refs"
    a, b, ref = submission(subs / "a"), submission(subs / "b"), submission(refs / "ref-x")
    elsewhere = submission(tmp_path / "elsewhere")
    dirs = [subs, refs]
    assert pipeline.submission_folders([], dirs) == [a, b, ref]
    assert pipeline.submission_folders(["ref-x", str(elsewhere), "b"], dirs) == [ref, elsewhere, b]
    # A name found nowhere still gets a folder, so the runner gives it its error line.
    assert pipeline.submission_folders(["ghost"], dirs) == [subs / "ghost"]


def test_only_slow_tasks_are_pregenerated():
    made = []
    pipeline.pregenerate(["rhymes", "chess-mate", "constrained", "chess-mate"], lambda t: made.append(t.name))
    assert made == ["chess-mate"]


def test_training_plan_skips_trained_models_and_starts_with_the_longest(tmp_path):
    tasks = ("rhymes", "chess-mate", "constrained")
    plan = baselines.plan_training("quick", tasks, tmp_path, VARIANTS[:2], (0,))
    assert plan.names == ["ref-unstunted-s0", "ref-myopic-s0"] and plan.cached == []
    costs = [baselines.training_cost(job["cfg"]) for job in plan.jobs]
    assert len(plan.jobs) == 6 and costs == sorted(costs, reverse=True) and costs[0] > costs[-1]
    assert (tmp_path / "ref-myopic-s0" / "submission.toml").is_file()
    # A model whose train_log records this very config is not trained again.
    done = plan.jobs[0]
    done["out"].mkdir(parents=True)
    (done["out"] / "train_log.json").write_text(json.dumps({"config": done["cfg"].to_dict()}))
    again = baselines.plan_training("quick", tasks, tmp_path, VARIANTS[:2], (0,))
    assert again.cached == [done["label"]] and done["label"] not in [j["label"] for j in again.jobs]


def test_a_profile_sets_each_task_its_own_budget(tmp_path):
    from tasks import get_task, task_names

    for name in task_names():  # every profile has data sizes on every task
        assert set(get_task(name).sizes) >= set(pipeline.PROFILE_NAMES), name
    long = baselines.reference_config("long", "constrained", "myopic", 1)
    assert (long.size, long.steps, long.variant, long.seed, long.tasks) == ("long", 10000, "myopic", 1, ("constrained",))
    assert baselines.reference_config("full", "constrained", "myopic", 1).steps is None  # one pass
    # The job list is ordered by what a job costs, steps included.
    plan = baselines.plan_training("long", ("rhymes", "constrained"), tmp_path, ("unstunted",), (0,))
    assert [j["label"] for j in plan.jobs] == ["ref-unstunted-s0/constrained", "ref-unstunted-s0/rhymes"]
    assert plan.jobs[0]["cfg"] == baselines.reference_config("long", "constrained", "unstunted", 0)


def test_train_reports_every_model_and_adds_the_random_init_control(tmp_path, monkeypatch):
    def fake_train_job(job, emit):
        emit(("training", job["label"]))
        emit(("step", job["label"], 1, 2, 0.5))
        emit(("done", job["label"]))

    monkeypatch.setattr(baselines, "train_job", fake_train_job)
    events = []
    ws = pipeline.workspace("quick", references=tmp_path)
    names = pipeline.train(["rhymes"], ws, 1, ("myopic",), (3,), events.append)
    assert names == ["ref-myopic-s3", RANDOM_INIT]
    assert events == [TrainEvent("training", "ref-myopic-s3/rhymes"),
                      TrainEvent("step", "ref-myopic-s3/rhymes", 1, 2, 0.5),
                      TrainEvent("done", "ref-myopic-s3/rhymes")]
    assert (tmp_path / RANDOM_INIT / "model-rhymes" / "model.safetensors").is_file()


@pytest.fixture
def fake_runner(monkeypatch):
    """runner.evaluate_job without a model: "bad" cannot be read, the others pass."""
    jobs = []

    def fake_job(job, emit):
        jobs.append(job)
        name = job["folder"].name
        if name == "bad":
            emit(("error", name, "*", "malformed TOML"))
            return [CellOutcome(name, t, "error", "malformed TOML") for t in job["tasks"]]
        for task in job["tasks"]:
            emit(("start", name, task, ""))
            emit(("done", name, task, "1s"))
        return [CellOutcome(name, t, "ok") for t in job["tasks"]]

    monkeypatch.setattr(runner, "evaluate_job", fake_job)
    return jobs


def test_evaluate_builds_one_job_per_submission_and_names_the_failures(tmp_path, fake_runner):
    subs = tmp_path / "subs"
    for name in ("bad", "good", "other"):
        submission(subs / name)
    # References in their own (empty) folder: the test must not see a quick run left in runs/.
    ws = pipeline.workspace("quick", subs, references=tmp_path / "references", results=tmp_path / "results")
    events = []
    failed = pipeline.evaluate([], ["rhymes", "constrained"], ws, 1, force=True, on_event=events.append)
    assert failed == ["bad"]
    assert [job["folder"].name for job in fake_runner] == ["bad", "good", "other"]
    assert {(j["cfg"].size, j["results"], j["force"]) for j in fake_runner} == {("quick", ws.results, True)}
    assert events[0] == EvalEvent("begin", cells=6)
    # An unreadable submission's one error finishes all of its cells.
    assert events[1] == EvalEvent("error", "bad", "*", "malformed TOML", cells=2)
    assert sum(e.cells for e in events[1:] if e.kind in ("done", "error")) == 6

    fake_runner.clear()
    assert pipeline.evaluate([], ["rhymes"], ws, 1, shard=(1, 2)) == []
    assert [job["folder"].name for job in fake_runner] == ["good"]


def test_run_trains_evaluates_and_writes_the_leaderboard(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "train", lambda tasks, ws, workers, on_event, standin:
                        calls.append(("train", standin)) or ["ref-a"])
    monkeypatch.setattr(pipeline, "evaluate", lambda names, tasks, ws, workers, on_event:
                        calls.append(("evaluate", list(names))) or ["x"])
    monkeypatch.setattr(pipeline, "leaderboard", lambda ws: calls.append("leaderboard") or 7)
    ws = pipeline.workspace("quick", references=tmp_path)
    summary = pipeline.run(["rhymes"], ws, 1, only_references=True)
    # the experiment alone builds no stand-in; a whole run does (the natural faces' model)
    assert calls == [("train", False), ("evaluate", [str(tmp_path / "ref-a")]), "leaderboard"]
    assert (summary.references, summary.failed, summary.rows) == (["ref-a"], ["x"], 7)
    calls.clear()
    pipeline.run(["rhymes"], ws, 1)
    assert calls[0] == ("train", True) and calls[1] == ("evaluate", [])  # every submission
