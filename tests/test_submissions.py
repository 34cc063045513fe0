"""Bad submissions cannot break the leaderboard.

Each bad submission gets one readable error line (never a traceback), an error cell and
an error row; a good submission evaluated beside them still gets its ok cell and its
ranked row. Also: out of memory, atomic writes, retried error cells, the cache key,
and escaping of user text in the leaderboard.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from benchmark import runner
from benchmark.evaluate import EvalConfig
from benchmark.results import cell_path, read_cell, write_atomic, write_cell
from benchmark.runner import evaluate_folder
from benchmark.safety import SubmissionError
from benchmark.submissions import read_submission

# Small enough for a random-init 2 x 32 model to finish a cell in about a second, large
# enough that the probes (at least 20 decision rows) and the future lens still run.
TINY_EVAL = EvalConfig(size="quick", n_eval=32, max_success=8, max_amp_examples=8, n_boot=50,
                       future_k=1, batch_size=32, lambdas=(0.0, 0.5), amp_width=2, amp_depth=1,
                       beam_width=2)
TASKS = ["rhymes"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run far faster single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_toml(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.toml").write_text(text)
    return folder


def good_toml(name: str, description: str = "a tiny random model") -> str:
    return f'name = "{name}"\ndescription = "{description}"\nauthors = ["tests"]\nmodel = "model"\n'


def with_model(folder: Path, model_dir: Path, name: str | None = None) -> Path:
    """A submission folder holding a copy of ``model_dir`` and a valid submission.toml."""
    shutil.copytree(model_dir, folder / "model")
    return write_toml(folder, good_toml(name or folder.name))


def set_weights(model_dir: Path, change) -> None:
    """Rewrite model.safetensors with ``change`` applied to every tensor."""
    from safetensors.torch import load_file, save_file

    path = model_dir / "model.safetensors"
    tensors = {k: change(v.clone()) for k, v in load_file(path).items()}
    save_file(tensors, path, metadata={"format": "pt"})


# ------------------------------------------------------------------ the bad submissions
# Each builder makes one broken submission folder; the case lists the line it must get.


def build_malformed_toml(folder, model_dir):
    shutil.copytree(model_dir, folder / "model")
    write_toml(folder, 'name = "malformed-toml\nmodel = "model"\n')


def build_dotdot_name(folder, model_dir):
    with_model(folder, model_dir)
    write_toml(folder, 'name = "../x"\nmodel = "model"\n')


def build_html_name(folder, model_dir):
    with_model(folder, model_dir)
    write_toml(folder, 'name = "<script>alert(1)</script>"\nmodel = "model"\n')


def build_missing_model(folder, model_dir):
    write_toml(folder, good_toml(folder.name).replace('model = "model"', 'model = "nowhere"'))


def build_pickle_only(folder, model_dir):
    from safetensors.torch import load_file

    with_model(folder, model_dir)
    weights = folder / "model" / "model.safetensors"
    torch.save(load_file(weights), folder / "model" / "pytorch_model.bin")
    weights.unlink()


def build_auto_map(folder, model_dir):
    with_model(folder, model_dir)
    config_path = folder / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    config_path.write_text(json.dumps(config))


def build_python_file(folder, model_dir):
    with_model(folder, model_dir)
    (folder / "model" / "modeling_evil.py").write_text("import os\nos.system('echo pwned')\n")


def build_nan_model(folder, model_dir):
    with_model(folder, model_dir)
    set_weights(folder / "model", lambda t: t.fill_(float("nan")) if t.is_floating_point() else t)


def build_few_words(folder, model_dir):
    """A tokenizer built from a few words: rhymes text maps to <unk>."""
    from benchmark.models import new_gpt2, word_tokenizer

    tok = word_tokenizer(["the", "and", "cat", "hat"])
    model = new_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=0)
    model.save_pretrained(folder / "model", safe_serialization=True)
    tok.save_pretrained(folder / "model")
    write_toml(folder, good_toml(folder.name))


def build_small_vocab(folder, model_dir):
    """The task's tokenizer, but a model with only 10 embeddings."""
    config_path = with_model(folder, model_dir) / "model" / "config.json"
    config = json.loads(config_path.read_text())
    n = config["vocab_size"]
    set_weights(folder / "model", lambda t: t[:10].clone() if t.shape[:1] == (n,) else t)
    config["vocab_size"] = 10
    config_path.write_text(json.dumps(config))


def build_slow_tokenizer(folder, model_dir):
    """A Python-only tokenizer (CTRL BPE): it has no offset mapping."""
    from transformers import CTRLTokenizer

    shutil.copytree(model_dir, folder / "model",
                    ignore=shutil.ignore_patterns("tokenizer*", "special_tokens_map.json"))
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    vocab.write_text(json.dumps({"<unk>": 0, "a": 1, "b": 2, "ab": 3}))
    merges.write_text("#version: 0.2\na b\n")
    CTRLTokenizer(str(vocab), str(merges)).save_pretrained(folder / "model")
    write_toml(folder, good_toml(folder.name))


CASES = {
    "malformed-toml": (build_malformed_toml, "malformed TOML"),
    "dotdot-name": (build_dotdot_name, "name must be 1-64 letters"),
    "html-name": (build_html_name, "name must be 1-64 letters"),
    "missing-model": (build_missing_model, "model folder not found"),
    "pickle-only": (build_pickle_only, "pickle weights refused (pytorch_model.bin)"),
    "auto-map": (build_auto_map, "config.json has auto_map (custom model code): refused"),
    "python-file": (build_python_file, "model folder contains Python files (modeling_evil.py)"),
    "nan-model": (build_nan_model, "the model returns NaN or infinite logits"),
    "few-words": (build_few_words, "the tokenizer cannot encode the task's text"),
    "small-vocab": (build_small_vocab, "beyond the model's vocabulary of 10"),
    "slow-tokenizer": (build_slow_tokenizer, "the tokenizer is not a fast tokenizer"),
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory, tiny_model_dir):
    """Every bad case and one good submission, evaluated into one results folder."""
    from benchmark.report import write_leaderboard

    root = tmp_path_factory.mktemp("suite")
    subs, results = root / "submissions", root / "results"
    for name, (build, _) in CASES.items():
        (subs / name).mkdir(parents=True)
        build(subs / name, tiny_model_dir)
    with_model(subs / "good", tiny_model_dir)
    outcomes, stages = {}, {}
    for folder in sorted(subs.iterdir()):
        seen = stages.setdefault(folder.name, [])
        out = evaluate_folder(folder, TASKS, TINY_EVAL, results,
                              on_event=lambda kind, sub, task, detail: seen.append(detail))
        outcomes[folder.name] = out[0]
    write_leaderboard(results, root / "leaderboard.md", subs)
    return {"subs": subs, "results": results, "outcomes": outcomes, "stages": stages,
            "board": (root / "leaderboard.md").read_text()}


def board_row(board: str, name: str) -> str:
    """The ranking table's row of a submission (names are escaped: '-' becomes '\\-')."""
    cell = "| " + name.replace("-", "\\-")
    rows = [line for line in board.splitlines() if cell + " |" in line or cell + " ⚠" in line]
    assert rows, f"no leaderboard row for {name}"
    return rows[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_submission_gets_one_line_and_an_error_row(suite, case):
    expected = CASES[case][1]
    outcome = suite["outcomes"][case]
    assert outcome.status == "error" and outcome.submission == case
    assert expected in outcome.detail
    assert "\n" not in outcome.detail and "Traceback" not in outcome.detail
    assert len(outcome.detail) <= 300
    stored = read_cell(cell_path(suite["results"], case, "rhymes"))
    assert stored["status"] == "error" and stored["error"] == outcome.detail
    row = board_row(suite["board"], case)
    assert row.startswith("| – |") and "error: " in row  # unranked, with its reason


def test_good_submission_beside_them_is_evaluated_and_ranked(suite):
    assert suite["outcomes"]["good"].status == "ok"
    cell = read_cell(cell_path(suite["results"], "good", "rhymes"))
    assert cell["status"] == "ok" and cell["metrics"]["success_greedy"]["all"]["n"] == 8
    row = board_row(suite["board"], "good")
    # An untrained tiny model solves nothing: listed with its numbers, but not ranked.
    assert row.startswith("| – | good | n/a: no task learned |") and "error" not in row


def test_nan_model_is_refused_before_generation(suite):
    # The sanity check runs before the "greedy" stage: the NaN never reaches generate().
    assert "greedy" not in suite["stages"]["nan-model"]
    assert "greedy" in suite["stages"]["good"]


def test_html_in_an_error_message_is_escaped_on_the_board(suite):
    row = board_row(suite["board"], "html-name")
    assert "<script>" not in row and "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in row
    assert row.count(" | ") == board_row(suite["board"], "good").count(" | ")


def test_unreadable_submission_names_stay_inside_results(tmp_path):
    results = tmp_path / "deep" / "results"
    weird = write_toml(tmp_path / "subs" / "<img src=x onerror=alert(1)>", "name = ")
    out = evaluate_folder(weird, TASKS, TINY_EVAL, results)
    assert out[0].submission == "_img_src_x_onerror_alert_1__"
    assert "malformed TOML" in out[0].detail
    # "subs/.." is tmp_path itself (no submission.toml): its error cell must not be
    # written to results/../rhymes.json.
    out = evaluate_folder(tmp_path / "subs" / "..", TASKS, TINY_EVAL, results)
    assert "no submission.toml" in out[0].detail
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")}
    assert written == {f"deep/results/{out[0].submission}/rhymes.json",
                       "deep/results/_img_src_x_onerror_alert_1__/rhymes.json"}


# ------------------------------------------------------------------ the command line


def test_cli_one_bad_one_good(tmp_path, tiny_model_dir, monkeypatch):
    """All submissions: exit 0 despite the bad one. Naming the bad one: exit 1."""
    from click.testing import CliRunner

    import benchmark.cli as cli
    import benchmark.evaluate

    # `--quick` means EvalConfig(size="quick"): hundreds of examples. Shrink it for the test.
    monkeypatch.setattr(benchmark.evaluate, "EvalConfig", lambda size, real_files=(): TINY_EVAL)
    # Rich wraps at the console's width (80 when not a terminal); measure our own line.
    monkeypatch.setattr(cli.console, "width", 1000)
    subs, results = tmp_path / "submissions", tmp_path / "results"
    with_model(subs / "good", tiny_model_dir)
    build_pickle_only(subs / "bad", tiny_model_dir)
    args = ["evaluate", "--task", "rhymes", "--quick", "--submissions", str(subs),
            "--references", str(subs), "--results", str(results)]

    everything = CliRunner().invoke(cli.main, args)
    assert everything.exit_code == 0, everything.output
    assert read_cell(cell_path(results, "good", "rhymes"))["status"] == "ok"
    errors = [line for line in everything.output.splitlines() if "error" in line]
    assert errors == [f"error bad / rhymes: {CASES['pickle-only'][1]}: save the model with "
                      "save_pretrained(..., safe_serialization=True) to get .safetensors"]

    named = CliRunner().invoke(cli.main, [*args[:1], "bad", *args[1:]])
    assert named.exit_code == 1
    assert CliRunner().invoke(cli.main, [*args[:1], "good", *args[1:]]).exit_code == 0


# ------------------------------------------------------------------ runner failures


def fake_result(*_args) -> dict:
    """What `runner._run_cell` returns, minus the work (for tests of the runner itself)."""
    return {"metrics": {}, "examples": [], "timings": {}, "data": {}}


@pytest.fixture
def small_sub(tmp_path, tiny_model_dir) -> Path:
    return with_model(tmp_path / "subs" / "small", tiny_model_dir)


@pytest.mark.parametrize("error", [MemoryError(), torch.OutOfMemoryError("CUDA out of memory. "
                                                                         "Tried to allocate 2 GiB")])
def test_out_of_memory_becomes_one_line_and_is_retried(small_sub, tmp_path, monkeypatch, error):
    def explode(*_args):
        raise error

    results = tmp_path / "results"
    monkeypatch.setattr(runner, "_run_cell", explode)
    out = evaluate_folder(small_sub, TASKS, TINY_EVAL, results)
    assert [(o.status, o.detail) for o in out] == [("error", "out of memory")]
    assert read_cell(cell_path(results, "small", "rhymes"))["error"] == "out of memory"
    # A stored error cell is never served from the cache: the next run computes it.
    monkeypatch.setattr(runner, "_run_cell", fake_result)
    assert [o.status for o in evaluate_folder(small_sub, TASKS, TINY_EVAL, results)] == ["ok"]
    assert [o.status for o in evaluate_folder(small_sub, TASKS, TINY_EVAL, results)] == ["cached"]


def test_an_infinite_metric_fails_its_cell_in_one_line_and_results_stay_standard_json(small_sub, tmp_path,
                                                                                       monkeypatch):
    def infinite_gain(*_args):
        out = fake_result()
        out["metrics"] = {"task_loss": {"value": float("-inf"), "lo": None, "hi": 1.0, "n": 3}}
        return out

    results = tmp_path / "results"
    monkeypatch.setattr(runner, "_run_cell", infinite_gain)
    out = evaluate_folder(small_sub, TASKS, TINY_EVAL, results)
    assert [(o.status, o.detail) for o in out] == \
        [("error", "SchemaError: a metric is not a finite number: metrics.task_loss.value = -inf")]
    path = cell_path(results, "small", "rhymes")
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON: {c}"))
    # write_cell itself never writes a non-standard file, nor a half one
    from benchmark.schema import Cell, Metrics

    bad = Cell(submission="small", task="rhymes", status="ok",
               metrics=Metrics.from_dict({"task_loss": {"value": float("inf"), "lo": 0.0, "hi": 1.0, "n": 3}}))
    before = path.read_text()
    with pytest.raises(ValueError):
        write_cell(path, bad)
    assert path.read_text() == before


def test_files_written_before_harness_6_read_their_infinities_as_null(tmp_path):
    from benchmark.results import read_json, train_log

    assert read_json('{"1.0": -Infinity, "x": NaN, "y": 0.5}') == {"1.0": None, "x": None, "y": 0.5}
    (tmp_path / "train_log.json").write_text('{"monitor": {"gain": -Infinity}}')
    assert train_log(tmp_path) == {"monitor": {"gain": None}}


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import benchmark.results as results_module

    from benchmark.schema import Cell

    path = cell_path(tmp_path, "sub", "rhymes")
    write_cell(path, Cell(submission="sub", task="rhymes", status="ok"))
    before = path.read_text()

    real_fdopen = results_module.os.fdopen

    class HalfWriter:
        """A file that writes half of what it is given, then fails (a full disk)."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_module.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError):
        write_cell(path, Cell(submission="sub", task="rhymes", status="ok", description="y" * 1000))
    with pytest.raises(OSError):
        write_atomic(tmp_path / "sub" / "new.json", "{}")
    # The old cell is intact, the new file never appeared, no temporary file is left.
    assert path.read_text() == before
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["rhymes.json"]


def test_leftover_temporary_files_are_removed(small_sub, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_run_cell", fake_result)
    results = tmp_path / "results"
    leftover = results / "small" / ".rhymes.json.abc123.tmp"  # a run killed mid-write
    leftover.parent.mkdir(parents=True)
    leftover.write_text('{"half": ')
    assert [o.status for o in evaluate_folder(small_sub, TASKS, TINY_EVAL, results)] == ["ok"]
    assert not list(results.rglob("*.tmp"))


# ------------------------------------------------------------------ the cache key


def test_cache_key(small_sub, tmp_path, monkeypatch):
    """Nothing changed: nothing recomputed. The tokenizer changed, or --force: recomputed.
    (A changed weight is tested in test_pipeline.)"""
    calls = []
    monkeypatch.setattr(runner, "_run_cell", lambda *a: calls.append(1) or fake_result())
    results = tmp_path / "results"

    def run(force: bool = False) -> str:
        return evaluate_folder(small_sub, TASKS, TINY_EVAL, results, force=force)[0].status

    assert run() == "ok"
    assert run() == "cached"
    (small_sub / "model" / "train_log.json").write_text("{}")  # not part of the model
    assert run() == "cached"
    assert run(force=True) == "ok"
    tok_path = small_sub / "model" / "tokenizer.json"
    tok = json.loads(tok_path.read_text())
    vocab = tok["model"]["vocab"]
    a, b = [w for w in vocab if not w.startswith("<")][:2]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # same files, two words swapped
    tok_path.write_text(json.dumps(tok))
    assert run() == "ok"
    assert run() == "cached"
    assert len(calls) == 3


# ------------------------------------------------------------------ leaderboard hygiene


def test_escape_makes_user_text_inert():
    from benchmark.report import escape

    assert escape("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert\\(1\\)&gt;"
    assert escape("| pipe |") == "\\| pipe \\|"
    assert escape("[link](http://x)") == "\\[link\\]\\(http://x\\)"
    assert escape("*bold* `code` line\nbreak") == "\\*bold\\* \\`code\\` line break"
    assert escape("Ada's & Bob's") == "Ada's &amp; Bob's"  # no broken '&\\#x27;'


def test_rendered_row_with_hostile_text():
    from benchmark.report import build_rows, ranked_table
    from benchmark.schema import Cell

    hostile = "<img src=x onerror=alert(1)> | pipe | [link](http://x)"
    cells = [Cell(submission="x", task="rhymes", status="error", error=hostile)]
    head, _, row = ranked_table(build_rows(cells), ["rhymes"], stale=set())
    assert row == ("| – | x | – | error: &lt;img src=x onerror=alert\\(1\\)&gt; \\| pipe \\| "
                   "\\[link\\]\\(http://x\\) | – | – | – | – |")
    # Unescaped pipes would add cells: the row has exactly the header's columns.
    assert row.replace("\\|", "").count("|") == head.count("|")


def test_stale_rows_are_marked(suite, tmp_path):
    """The model changed after its row was computed: marked, even when the folder name
    differs from the submission's name."""
    from benchmark.report import write_leaderboard

    subs, results = tmp_path / "submissions", tmp_path / "results"
    shutil.copytree(suite["subs"] / "good", subs / "renamed-folder")
    shutil.copytree(suite["results"] / "good", results / "good")
    out = tmp_path / "leaderboard.md"
    write_leaderboard(results, out, subs)
    assert "stale" not in board_row(out.read_text(), "good")
    set_weights(subs / "renamed-folder" / "model", lambda t: t + 0.01)
    write_leaderboard(results, out, subs)
    assert board_row(out.read_text(), "good").startswith("| – | good ⚠ stale |")


def test_cli_survives_markup_in_an_error(tmp_path):
    from click.testing import CliRunner

    import benchmark.cli as cli

    subs = tmp_path / "submissions"
    write_toml(subs / "evil", 'name = "[/x]"\nmodel = "model"\n')
    res = CliRunner().invoke(cli.main, ["evaluate", "--task", "rhymes", "--submissions", str(subs),
                                        "--results", str(tmp_path / "results")])
    assert res.exception is None and "[/x]" in res.output


def test_one_model_per_task(tmp_path, tiny_model_dir, monkeypatch):
    """A [model] table gives each task its own folder; the tasks default to its keys, and
    each cell is keyed by the hash of the model that answered it."""
    folder = tmp_path / "subs" / "per-task"
    shutil.copytree(tiny_model_dir, folder / "model-rhymes")
    write_toml(folder, 'name = "per-task"\n[model]\nrhymes = "model-rhymes"\nconstrained = "nowhere"\n')
    sub = read_submission(folder)
    assert sub.tasks == ["constrained", "rhymes"]
    assert sub.model_for("rhymes") == folder / "model-rhymes"
    monkeypatch.setattr(runner, "_run_cell", fake_result)
    out = evaluate_folder(folder, ["rhymes", "constrained"], TINY_EVAL, tmp_path / "results")
    # The missing constrained model fails that cell alone, in one line.
    assert [(o.task, o.status) for o in out] == [("rhymes", "ok"), ("constrained", "error")]
    assert "nowhere" in out[1].detail
    with pytest.raises(SubmissionError, match="unknown tasks"):
        write_toml(folder, 'name = "x"\n[model]\npoetry = "model-rhymes"\n')
        read_submission(folder)
