"""The natural chess face: FEN and SAN, few-shot, judged as chess-mate judges."""

from __future__ import annotations

import dataclasses
import re

import chess
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import get_task
from tasks.chess.natural import FEWSHOT, INSTRUCTION, NaturalChessMateTask
from tasks.chess.search import MateSolver

TASK = NaturalChessMateTask()


@pytest.fixture(scope="module")
def real():
    return [dict(row) for row in TASK.generate("real", 10_000, 0)]


def oracle(uci: bool):
    """Answers each turn with the reference line's next attacker move (SAN or UCI)."""
    def complete(texts: list[str]) -> list[str]:
        out = []
        for text in texts:
            board = TASK.board_of_turn(text)
            line = LINES[text[:text.rindex("Moves:")]]
            move = chess.Move.from_uci(line[len(board.move_stack)])
            out.append(" " + (move.uci() if uci else board.san(move)) + " and more words")
        return out
    return complete


LINES: dict[str, list[str]] = {}


def test_every_shipped_puzzle_reads_in_san_and_verifies(real):
    assert len(real) > 400
    for ex in real:
        meta = TASK.meta(ex)
        assert TASK.check(ex, ex["completion"]), ex["id"]
        # The transcript replays the reference line exactly.
        assert TASK.moves_of(chess.Board(meta["fen"]), ex["completion"]) == meta["line"].split()
        assert all(d["offset"] == len(ex["prompt"]) for d in ex["decisions"])


def test_a_prompt_is_an_instruction_k_solved_puzzles_and_the_item(real):
    for ex in real[:50]:
        blocks = ex["prompt"].split("\n\n")
        assert blocks[0] == INSTRUCTION and len(blocks) == FEWSHOT + 2
        fen = TASK.meta(ex)["fen"]
        for block in blocks[1:-1]:  # exemplars: solved train puzzles, never the item
            assert block.startswith("FEN: ") and block.rstrip().endswith("#")
            assert block.split("\n")[0][5:].split()[:2] != fen.split()[:2]
        side = "White" if chess.Board(fen).turn == chess.WHITE else "Black"
        assert blocks[-1].endswith(f"{side} to move and mate in {TASK.meta(ex)['n']}.\nMoves: "
                                   + ("1." if side == "White" else "1..."))
    again = [dict(row) for row in TASK.generate("real", 50, 0)]
    assert [e["prompt"] for e in again] == [e["prompt"] for e in real[:50]]  # deterministic


def test_wrong_illegal_and_non_stubborn_transcripts_fail(real):
    def replies(ex) -> int:
        board = chess.Board(TASK.meta(ex)["fen"])
        board.push_uci(TASK.meta(ex)["line"].split()[0])
        return board.legal_moves.count()

    mate2 = next(ex for ex in real if TASK.meta(ex)["n"] == 2 and replies(ex) > 1)
    board = chess.Board(TASK.meta(mate2)["fen"])
    line = TASK.meta(mate2)["line"].split()
    words = mate2["completion"].split()
    assert not TASK.check(mate2, " ".join(words[:-1]))  # stops before the mate
    assert not TASK.check(mate2, " ".join(words[:-1] + ["Ke9"]))  # not a move
    assert not TASK.check(mate2, " Kxa9 " + " ".join(words[1:]))  # illegal first move
    # Another defender reply than the stubborn one: the transcript is not the puzzle's game.
    after = board.copy()
    after.push_uci(line[0])
    other = next(m for m in after.legal_moves if m.uci() != line[1])
    wrong = TASK.transcript(board, [line[0], other.uci()], False)
    assert not TASK.check(mate2, wrong)
    # Numbers glued to moves and check marks left out still read.
    assert TASK.check(mate2, mate2["completion"].replace(". ", ".").replace("+", "").replace("#", ""))


def test_play_with_the_solution_solves_every_puzzle_in_san_and_in_uci(real):
    items = [ex for ex in real if TASK.meta(ex)["n"] <= 2][:80]
    for ex in items:
        LINES[ex["prompt"][:ex["prompt"].rindex("Moves:")]] = TASK.meta(ex)["line"].split()
    for uci in (False, True):
        transcripts = TASK.play(items, oracle(uci))
        assert all(TASK.check(ex, t) for ex, t in zip(items, transcripts))
        assert [TASK.target_from_completion(ex, t, "mate_move") for ex, t in zip(items, transcripts)] == [
            TASK.meta(ex)["line"].split()[-1] for ex in items]


def test_the_random_legal_move_is_a_low_floor(real):
    items = real[:120]
    transcripts = TASK.play(items, TASK.baseline_solvers(0)["random-legal-move"])
    solved = sum(TASK.check(ex, t) for ex, t in zip(items, transcripts))
    assert 0 <= solved < 0.15 * len(items)
    assert transcripts == TASK.play(items, TASK.baseline_solvers(0)["random-legal-move"])


def test_an_illegal_answer_ends_the_game_and_shows_in_the_transcript(real):
    ex = real[0]
    assert TASK.play([ex], lambda texts: [" Zz9 junk"] * len(texts)) == [" Zz9"]
    assert TASK.play([ex], lambda texts: [""] * len(texts)) == [""]


def test_plan_spans_cover_the_moves_before_the_mate(real):
    mate1 = next(ex for ex in real if TASK.meta(ex)["n"] == 1)
    mate2 = next(ex for ex in real if TASK.meta(ex)["n"] == 2)
    text1, text2 = (e["prompt"] + e["completion"] for e in (mate1, mate2))
    (a, b), _ = TASK.plan_spans(mate1)
    assert text1[a:b] == mate1["completion"].split()[-1]
    (a, b), _ = TASK.plan_spans(mate2)
    assert text2[a:b].split() == mate2["completion"].split()[:-1]
    assert TASK.first_step(mate2["completion"]) == mate2["completion"].split()[0].rstrip("+#")
    # With its example the first step is written as the targets are (UCI), so the causal
    # check sees that a mate in 1's plan is its first move.
    assert TASK.first_step(mate2["completion"], mate2) == TASK.meta(mate2)["line"].split()[0]
    assert TASK.first_step(mate1["completion"], mate1) == TASK.target_from_completion(mate1, mate1["completion"], "mate_move")


def test_a_bpe_gpt2_gets_a_whole_cell(tmp_path, real):
    """A pretrained-style submission is evaluated on the face end to end, real split included."""
    from benchmark.models import load_model
    from benchmark.runner import _run_cell
    from tests.test_submissions import TINY_EVAL
    from tests.tiny_models import bpe_gpt2_folder

    assert get_task("chess-mate-natural").face == "natural"
    bpe_gpt2_folder(tmp_path, [e["prompt"] + e["completion"] for e in real[:100]], n_positions=1024)
    cfg = dataclasses.replace(TINY_EVAL, causal_pairs=8, max_success=8)
    metrics = _run_cell(load_model(tmp_path, torch.device("cpu")), cfg.task("chess-mate-natural"), cfg,
                        lambda s: None)["metrics"]
    for name in ("success_greedy", "success_greedy_real", "baseline_random-legal-move", "plan_probe"):
        assert name in metrics, name
    assert metrics["success_greedy"]["all"]["value"] == 0.0  # an untrained model mates no one


def solver_oracle(uci: bool):
    """Answers each turn from the prompt alone: the position it encodes, N from its "mate in
    N." line and the moves so far; the move is the solver's first winning one (often not the
    reference line's), written in SAN or UCI."""
    solver = MateSolver()

    def complete(texts: list[str]) -> list[str]:
        out = []
        for text in texts:
            board = TASK.board_of_turn(text)
            n = int(re.findall(r"mate in (\d)\.", text)[-1])
            move = solver.winning_moves(board, n - len(board.move_stack) // 2, limit=1)[0]
            out.append(" " + (move.uci() if uci else board.san(move)))
        return out
    return complete


def test_play_with_a_solver_that_reads_only_the_prompt_mates_every_puzzle(real):
    items = [ex for ex in real if TASK.meta(ex)["n"] <= 2][::4] + [ex for ex in real if TASK.meta(ex)["n"] == 3][:6]
    for uci in (False, True):
        transcripts = TASK.play(items, solver_oracle(uci))
        assert all(TASK.check(ex, t) for ex, t in zip(items, transcripts))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_move_shaped_text_never_makes_the_judge_raise(real, data):
    """Text made of this puzzle's own moves (SAN, UCI, marks dropped), move numbers, null
    moves and junk: the verifier, the targets, the first step and play never raise."""
    ex = data.draw(st.sampled_from([e for e in real[:40] if TASK.meta(e)["n"] <= 2]))
    board, line = chess.Board(TASK.meta(ex)["fen"]), TASK.meta(ex)["line"].split()
    played, words = board.copy(), []
    for uci in line:
        move = chess.Move.from_uci(uci)
        words += [played.san(move), played.san(move).rstrip("+#"), uci]
        played.push(move)
    words += [board.san(m) for m in board.legal_moves] + ["1.", "2.", "1...", "2...", "2.Qf7#", "--", "0000",
                                                          "Z0", "O-O", "e7e8q", "1-0", "#", "+"]
    word = st.one_of(st.sampled_from(words), st.text(max_size=6))
    text = data.draw(st.lists(word, max_size=8).map(lambda ws: "".join(" " + w for w in ws)))
    assert TASK.check(ex, text) in (True, False)
    for name in TASK.target_names:
        assert TASK.target_from_completion(ex, text, name) is None or isinstance(
            TASK.target_from_completion(ex, text, name), str)
    for step in (TASK.first_step(text), TASK.first_step(text, ex)):
        assert step is None or isinstance(step, str)
    transcript, = TASK.play([ex], lambda texts: [text] * len(texts))
    assert isinstance(transcript, str)
