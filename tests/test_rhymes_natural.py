"""The natural rhymes face: English couplets, few-shot, real couplets, any tokenizer."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

import benchmark.cli as cli
from tasks import get_task
from tasks.base import TaskError, split_of
from tasks.rhymes_natural import FEWSHOT, INSTRUCTION, REAL_COUPLETS, NaturalRhymesTask, family, last_word

TASK = NaturalRhymesTask()


@pytest.fixture(scope="module")
def test_items():
    return list(TASK.generate("test", 60, 0))


def test_a_prompt_is_an_instruction_k_couplets_and_line_1_with_its_line_break(test_items):
    for ex in test_items:
        prompt = ex["prompt"]
        assert prompt.startswith(INSTRUCTION + "\n\n") and prompt.endswith(",\n")
        blocks = prompt[len(INSTRUCTION) + 2:].split("\n\n")
        assert len(blocks) == FEWSHOT + 1 and all(b.count("\n") == 1 for b in blocks[:-1])
        assert all(d["offset"] == len(prompt) for d in ex["decisions"])
        assert not ex["completion"][0].isspace() and "\n" not in ex["completion"]
        own = family(TASK.meta(ex)["a"])
        for block in blocks[:-1]:  # exemplars: train couplets, never of the item's rhyme family
            line1, line2 = block.split("\n")
            assert split_of(line1) == "train" and family(last_word(line1)) != own
        assert TASK.check(ex, ex["completion"])


def test_splits_are_disjoint_and_deterministic(test_items):
    dev = TASK.generate("dev", 100, 0)
    line1 = lambda ex: ex["prompt"].rsplit("\n", 2)[-2]
    assert not {line1(e) for e in test_items} & {line1(e) for e in dev}
    assert list(TASK.generate("test", 60, 0)) == test_items
    assert [e["prompt"] for e in TASK.generate("test", 60, 1)] != [e["prompt"] for e in test_items]


def test_the_verifier_reads_line_2_only(test_items):
    ex = test_items[0]
    a = TASK.meta(ex)["a"]
    rhyme = TASK.meta(ex)["b"]
    assert TASK.check(ex, f"And then the {rhyme.upper()}!")
    assert TASK.check(ex, f"\nAnd then the {rhyme}.\nmore lines")  # a leading line break is fine
    assert not TASK.check(ex, f"And then the {a}.")  # the same word is no rhyme
    assert not TASK.check(ex, f"{rhyme}")  # one word is no line
    assert not TASK.check(ex, f"And then\nthe {rhyme}")  # the rhyme must end line 2
    assert TASK.target_from_completion(ex, f"we saw a {rhyme}-like thing, the {rhyme}.", "rhyme_word") == rhyme
    assert TASK.target_from_completion(ex, "", "rhyme_word") is None


def test_real_couplets_are_a_scored_split_and_a_checked_file(tmp_path):
    real = TASK.generate("real", 10_000, 0)
    assert len(real) == 289 and all(TASK.check(e, e["completion"]) for e in real)
    assert {TASK.group(e) for e in real} == {"real"}
    runner = CliRunner()
    ok = runner.invoke(cli.main, ["tasks", "check", "rhymes-natural", "--file", str(REAL_COUPLETS)])
    assert ok.exit_code == 0 and "289 of 289 couplets verified" in ok.output
    rows = [json.loads(line) for line in REAL_COUPLETS.read_text().splitlines()[:5]]
    rows[2]["line2"] = "A line that ends on nothing at all."
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = runner.invoke(cli.main, ["tasks", "check", "rhymes-natural", "--file", str(bad)])
    assert out.exit_code == 1 and "4 of 5 couplets verified" in out.output and "couplet 3" in out.output
    bad.write_text('{"line1": "only one line"}\n')
    with pytest.raises(TaskError, match="bad.jsonl:1: needs string fields line1 and line2"):
        TASK.check_file(bad)
    broken = runner.invoke(cli.main, ["tasks", "check", "rhymes-natural", "--file", str(bad)])
    assert broken.exit_code == 2 and "needs string fields" in broken.output
    # Another file is its own real split.
    rows[2] = json.loads(REAL_COUPLETS.read_text().splitlines()[2])
    mine = tmp_path / "mine.jsonl"
    mine.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert len(NaturalRhymesTask(real_file=mine).generate("real", 100, 0)) == 5


def test_chance_is_low_and_references_do_not_train_on_the_face(test_items):
    from benchmark.pipeline import reference_tasks

    lines = TASK.baseline_solvers(0)["random-line"]([e["prompt"] for e in test_items])
    assert sum(TASK.check(e, c) for e, c in zip(test_items, lines)) <= 6  # chance: rhyming by luck
    assert get_task("rhymes-natural").face == "natural" and TASK.vocabulary() == []
    assert reference_tasks(["rhymes", "rhymes-natural", "constrained"]) == ["rhymes", "constrained"]


def test_a_bpe_gpt2_gets_a_whole_cell(tmp_path):
    """A pretrained-style submission (byte-level BPE, rhyme words over several tokens) is
    evaluated on the face end to end: decision points map through offsets, budgets are words."""
    from benchmark.models import load_model
    from benchmark.runner import _run_cell
    from tests.test_submissions import TINY_EVAL
    from tests.tiny_models import bpe_gpt2_folder

    tok = bpe_gpt2_folder(tmp_path, [e["prompt"] + e["completion"] for e in TASK.generate("dev", 200, 0)])
    assert max(len(tok(" " + w)["input_ids"]) for w in ("kangaroo", "umbrella", "sun")) > 1
    mine = tmp_path / "mine.jsonl"  # a real couplets file of the user's, scored as the real split
    mine.write_text("\n".join(REAL_COUPLETS.read_text().splitlines()[:5]) + "\n")
    cfg = dataclasses.replace(TINY_EVAL, causal_pairs=8, max_success=8, real_files=(("rhymes-natural", str(mine), "h"),))
    task = cfg.task("rhymes-natural")
    task.max_words = 4  # an untrained model never ends its line: keep its garbage short
    metrics = _run_cell(load_model(tmp_path, torch.device("cpu")), task, cfg, lambda s: None)["metrics"]
    for name in ("success_greedy", "success_greedy_real", "baseline_random-line", "plan_probe", "causal"):
        assert name in metrics, name
    assert 0.0 <= metrics["success_greedy"]["all"]["value"] <= 1.0 and metrics["success_greedy_real"]["all"]["n"] == 5


def test_a_real_file_is_named_on_the_command_line_and_checked_first(tmp_path):
    from benchmark.evaluate import EvalConfig

    assert "real_files" not in EvalConfig().to_dict()  # existing cells keep their cache keys
    runner = CliRunner()
    no_files = runner.invoke(cli.main, ["evaluate", "--real", f"rhymes={REAL_COUPLETS}", "--results", str(tmp_path)])
    assert no_files.exit_code == 2 and "task rhymes does not read files" in no_files.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    broken = runner.invoke(cli.main, ["evaluate", "--real", f"rhymes-natural={bad}", "--results", str(tmp_path)])
    assert broken.exit_code == 2 and "bad.jsonl:1: not JSON" in broken.output
    missing = runner.invoke(cli.main, ["evaluate", "--real", f"rhymes-natural={tmp_path / 'none.jsonl'}"])
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert runner.invoke(cli.main, ["evaluate", "--real", "rhymes-natural"]).exit_code == 2
