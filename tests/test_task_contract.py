"""The Task interface: what the harness may ask every task, and what tasks never import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import get_task, task_names
from tasks.base import CheckReport, Task, TaskError

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"


def sample(task: Task, n: int = 60) -> list[dict]:
    """A few examples of a task without generating chess puzzles (its real split is shipped)."""
    split = "real" if "real" in task.extra_success_splits else "train"
    return list(task.generate(split, n, 0))


@pytest.mark.parametrize("name", task_names())
def test_every_task_declares_what_the_harness_asks(name):
    task = get_task(name)
    assert isinstance(task, Task) and task.name == name
    assert isinstance(task.data_version, str) and task.data_version
    assert isinstance(task.extra_success_splits, tuple)
    for example in sample(task):
        meta = task.meta(example)
        assert isinstance(meta, dict)
        assert task.group(example) == meta.get("group", "all")
        assert task.meta(dict(example, meta=meta)) == meta  # a stored dict reads the same


@pytest.mark.parametrize("name", task_names())
@settings(max_examples=100, deadline=None)
@given(text=st.text())
def test_no_completion_makes_a_verifier_raise(name, text):
    task = get_task(name)
    for example in sample(task, 3):
        assert task.check(example, text) in (True, False)
        for target in task.target_names:
            task.target_from_completion(example, text, target)


@pytest.mark.parametrize("name", task_names())
def test_declared_example_length_matches_the_data(name):
    """example_tokens orders the training jobs: it must be the data's real mean length."""
    task = get_task(name)
    lengths = [len((ex["prompt"] + ex["completion"]).split()) for ex in sample(task, 400)]
    mean = sum(lengths) / len(lengths)
    assert abs(task.example_tokens - mean) <= 0.1 * mean, (task.example_tokens, mean)


def test_data_version_defaults_to_the_version_and_scoring_changes_keep_it():
    assert get_task("constrained").data_version == get_task("constrained").version
    # Rhymes 2.1 reads the slot in the ending word's own class; its couplets are v2's.
    assert (get_task("rhymes").version, get_task("rhymes").data_version) == ("2.1", "2")
    chess = get_task("chess-mate")
    # Chess v3 writes moves as square tokens: its built examples (data v2) are new, its
    # puzzle stream (positions and lines, no text) is v1's, so the slow part stays cached.
    assert (chess.version, chess.data_version, chess.stream_version) == ("3", "2", "1")
    assert chess.stream_folder(0).name == "chess-mate-v1-python-seed0-stream"


def test_meta_copies_a_dict_and_parses_a_string():
    stored = {"group": "g", "n": 2}
    assert Task.meta({"meta": json.dumps(stored)}) == stored
    copy = Task.meta({"meta": stored})
    copy["n"] = 3
    assert stored["n"] == 2
    assert get_task("rhymes").group({"meta": "{}"}) == "all"


@pytest.mark.parametrize("name", ["rhymes", "constrained"])
def test_a_task_that_reads_no_files_says_so(name, tmp_path):
    with pytest.raises(TaskError, match=f"task {name} does not read files"):
        get_task(name).check_file(tmp_path / "anything.csv")


def test_check_generated_counts_by_group_and_lists_failures():
    from tasks.constrained import ConstrainedTask

    report = get_task("constrained").check_generated(20)
    assert report.ok and (report.total, report.verified) == (40, 40)
    assert len(report.by_group) > 1 and "counts" in report.by_group and report.failures == []

    class Broken(ConstrainedTask):
        def check(self, example, completion):
            return self.group(example) != "counts"

    report = Broken().check_generated(20)
    counts = report.by_group["counts"][1]
    assert not report.ok and report.verified == 40 - counts and len(report.failures) == counts
    assert all("reference completion fails the verifier" in f for f in report.failures)
    assert not CheckReport("items").ok  # nothing checked is not a pass


def test_tasks_import_nothing_from_benchmark():
    """tasks/ is data and verifiers: no torch, no harness (a lazy import counts too)."""
    pattern = re.compile(r"^\s*(from|import)\s+benchmark\b", re.MULTILINE)
    offenders = [str(p) for p in TASKS_DIR.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    code = ("import sys; from tasks import get_task, task_names; "
            "[get_task(n).vocabulary() for n in task_names()]; "
            "import tasks.chess.stream, tasks.chess.lichess; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('benchmark', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
