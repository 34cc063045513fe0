"""Tests of the chess mate-in-N task: the judge, the generator, the text and the harness."""

from __future__ import annotations

import hashlib
import itertools
import json
import random

import chess
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks import get_task
from tasks.base import Task, split_of
from tasks.chess import ChessMateTask
from tasks.chess.generate import canonical_fen, chunk_puzzles, stockfish_path
from tasks.chess.lichess import LICHESS_SAMPLE, check_lichess_file, load_lichess_csv
from tasks.chess.search import MateSolver, _king_can_flee, checking_moves, forces_mate, is_mate, verify_solution
from tasks.chess.stream import puzzle_stream
from tasks.chess.task import random_mover
from tasks.chess.text import (MOVE_TOKENS, board_from_text, describe_mix, encode_line, encode_move, encode_prompt,
                              first_move_text, split_moves, vocabulary)


@pytest.fixture(scope="module")
def lichess():
    examples, errors = load_lichess_csv(LICHESS_SAMPLE)
    assert errors == []
    return examples


@pytest.fixture(scope="module")
def generated_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def generated(generated_cache):
    """A tiny generated train set (its own cache folder, so it is really generated)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MESABENCH_CACHE", str(generated_cache))
    examples = list(ChessMateTask(workers=1, chunk_games=5).generate("train", 10, seed=3))
    mp.undo()
    return examples


meta = Task.meta


# -- an independent, naive judge to cross-check the fast one ----------------------------------
def naive_mate(board: chess.Board, n: int) -> bool:
    """Mate in <= n by plain minimax over python-chess's legal moves: no ordering, no table."""
    if n <= 0:
        return False
    for move in list(board.legal_moves):
        board.push(move)
        try:
            if board.is_checkmate():
                return True
            replies = list(board.legal_moves)
            if replies and all(_after(board, r, n - 1) for r in replies):
                return True
        finally:
            board.pop()
    return False


def _after(board: chess.Board, reply: chess.Move, n: int) -> bool:
    board.push(reply)
    try:
        return naive_mate(board, n)
    finally:
        board.pop()


def random_positions(count: int, seed: int) -> list[chess.Board]:
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        board = chess.Board()
        for _ in range(rng.randrange(0, 120)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
        if not board.is_game_over():
            out.append(board)
    return out


# -- the judge -------------------------------------------------------------------------------
def test_checking_moves_and_mates_are_exact():
    for board in random_positions(150, seed=1) + [chess.Board("8/P6k/8/8/8/8/6Kp/8 w - - 0 1")]:
        expected = {m for m in board.legal_moves if board.gives_check(m)}
        got = checking_moves(board)
        assert set(got) == expected and len(got) == len(expected), board.fen()
        for move in got:
            flees = _king_can_flee(board, move)  # a shortcut that must never hide a mate
            board.push(move)
            mate = board.is_checkmate()
            board.pop()
            assert not (flees and mate), (board.fen(), move)
            assert is_mate(board, move) == mate, (board.fen(), move)


def test_every_shipped_lichess_puzzle_verifies():
    report = check_lichess_file(LICHESS_SAMPLE)
    assert report.total == 455 and report.unit == "puzzles"
    assert report.verified == 455 and report.ok, report.failures[:5]
    assert report.by_group == {"mate1": [268, 268], "mate2": [164, 164], "mate3": [23, 23]}
    # The task reads the same files through the harness's interface.
    assert get_task("chess-mate").check_file(LICHESS_SAMPLE) == report


def _lichess_start(example: dict):
    m = meta(example)
    return chess.Board(m["fen"]), m["n"], m["lichess_line"].split()


def test_corrupted_lichess_solutions_are_rejected(lichess):
    """Swap each attacker move, one at a time, for a legal move that does not force mate in
    the moves left: the line must then fail (every puzzle, every attacker move)."""
    swaps = 0
    for example in lichess:
        board, n, line = _lichess_start(example)
        assert verify_solution(board.fen(), line, n)
        for i in range(0, len(line), 2):
            position = board.copy()
            for move in line[:i]:
                position.push_uci(move)
            left = n - i // 2
            solver = MateSolver()
            for alternative in sorted(position.legal_moves, key=lambda m: m.uci()):
                position.push(alternative)
                mates = solver.defender_lost(position, left - 1)
                position.pop()
                if not mates:
                    corrupted = line[:i] + [alternative.uci()] + line[i + 1:]
                    assert not verify_solution(board.fen(), corrupted, n), (example["id"], corrupted)
                    swaps += 1
                    break
    assert swaps > 600


def test_fast_judge_agrees_with_naive_minimax(lichess):
    """On real mate-in-1/2 positions and on random ones, the optimized search and plain
    minimax give the same answer, both for mates and for non-mates."""
    small = [e for e in lichess if meta(e)["n"] <= 2][:12]
    boards = [_lichess_start(e)[0] for e in small] + random_positions(12, seed=7)
    for board in boards:
        for n in (1, 2):
            assert forces_mate(board, n) == naive_mate(board.copy(), n), (board.fen(), n)
    # After a non-mating first move the answer is "no" for both, too.
    for example in small[:6]:
        board, n, line = _lichess_start(example)
        for move in list(board.legal_moves)[:8]:
            board.push(move)
            solver_says = MateSolver().defender_lost(board, n - 1)
            naive_says = board.is_checkmate() or (
                n > 1 and bool(list(board.legal_moves))
                and all(_after(board, r, n - 1) for r in list(board.legal_moves)))
            board.pop()
            assert solver_says == naive_says, (board.fen(), move)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_verify_accepts_only_forced_mates(lichess, data):
    """Property: replace one attacker move by any legal move; the line verifies exactly when
    that move still forces mate in the moves left and the rest of the line is a forced mate."""
    example = data.draw(st.sampled_from(lichess))
    board, n, line = _lichess_start(example)
    i = 2 * data.draw(st.integers(0, n - 1))
    position = board.copy()
    for move in line[:i]:
        position.push_uci(move)
    alternative = data.draw(st.sampled_from(sorted(position.legal_moves, key=lambda m: m.uci())))
    corrupted = line[:i] + [alternative.uci()] + line[i + 1:]
    if verify_solution(board.fen(), corrupted, n):
        position.push(alternative)
        assert MateSolver().defender_lost(position, n - i // 2 - 1)


@given(st.text(max_size=60), st.integers(-2, 5))
@settings(max_examples=60, deadline=None)
def test_verify_never_raises_on_garbage(text, n):
    assert verify_solution("6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1", text, n) in (True, False)
    assert verify_solution(text, "a1a8", n) in (True, False)


def test_verify_basic_cases():
    back_rank = "6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1"
    assert verify_solution(back_rank, "a1a8", 1)
    assert verify_solution(back_rank, ["a1a8"], 3)  # a mate in 1 is also a mate in 3
    assert not verify_solution(back_rank, "a1a7", 1)  # legal, not mate
    assert not verify_solution(back_rank, "a1a9", 1)  # not a move
    assert not verify_solution(back_rank, "a1a8 g8h7", 1)  # goes past the mate
    assert not verify_solution(back_rank, "", 1)
    assert not forces_mate(chess.Board("7k/8/6K1/8/8/8/8/8 w - - 0 1"), 3)  # bare kings


# -- the generator ------------------------------------------------------------------------------
# The first 12 puzzles of seed 5, as the generator has always made them: a change that
# alters the stream must bump ChessMateTask.data_version (the cache folders' name).
STREAM_SEED5 = "7aa560e090265c6a5f21df26f2b077784205b489dc1ebd3e7c960bc7cfe4d616"


def test_stream_is_the_same_for_any_workers_and_chunks():
    one = list(itertools.islice(puzzle_stream(5, workers=1, chunk_games=3), 12))
    two = list(itertools.islice(puzzle_stream(5, workers=2, chunk_games=5), 12))
    assert one == two
    assert len({r["fen"] for r in one}) == len(one)
    assert hashlib.sha256(json.dumps(one, sort_keys=True).encode()).hexdigest() == STREAM_SEED5


def test_generated_puzzles_are_unique_and_verified(generated):
    assert len(generated) == 10
    assert [meta(e)["n"] for e in generated].count(3) == 1  # MIX: 62% / 26% / 12%
    fens = [meta(e)["fen"] for e in generated]
    assert len(set(fens)) == len(fens)
    for example in generated:
        m = meta(example)
        board, n, line = chess.Board(m["fen"]), m["n"], m["line"].split()
        assert m["source"] == "generated" and m["group"] == f"mate{n}"
        assert len(line) == 2 * n - 1
        assert verify_solution(m["fen"], line, n)
        solver = MateSolver()
        assert [mv.uci() for mv in solver.winning_moves(board, n)] == [line[0]]  # unique first move
        assert not solver.mate_in(board, n - 1)  # no shorter mate
        assert board.castling_rights == 0 and board.ep_square is None
        assert m["fen"] == canonical_fen(board)


def test_generation_is_deterministic_and_cached(generated, tmp_path, monkeypatch):
    monkeypatch.setenv("MESABENCH_CACHE", str(tmp_path))
    again = list(ChessMateTask(workers=2, chunk_games=5).generate("train", 10, seed=3))
    assert again == generated
    assert list(ChessMateTask(workers=1, chunk_games=5).generate("train", 10, seed=3)) == generated  # from the cache
    assert not list(tmp_path.glob("*.tmp*"))
    seed4 = list(itertools.islice(puzzle_stream(4, chunk_games=2), 3))
    seed3 = list(itertools.islice(puzzle_stream(3, chunk_games=2), 3))
    assert seed3 != seed4


def test_splits_never_share_a_position(generated, generated_cache, monkeypatch):
    monkeypatch.setenv("MESABENCH_CACHE", str(generated_cache))  # extends the fixture's stream
    dev = list(ChessMateTask(workers=1, chunk_games=5).generate("dev", 2, seed=3))
    train_fens = {meta(e)["fen"] for e in generated}
    dev_fens = {meta(e)["fen"] for e in dev}
    assert len(dev) == 2 and not train_fens & dev_fens
    assert all(split_of(f) == "train" for f in train_fens)
    assert all(split_of(f) == "dev" for f in dev_fens)


def test_describe_mix_counts_everything(generated, lichess):
    mix = describe_mix(generated)
    for field in ("n", "phase", "pieces", "side", "first_move"):
        assert sum(mix[field].values()) == len(generated)
    assert mix["source"] == {"generated": 10}
    assert describe_mix(lichess)["n"] == {1: 268, 2: 164, 3: 23}


def test_real_split_is_the_lichess_sample():
    task = ChessMateTask(workers=1)
    assert len(task.generate("real", 10**6, seed=0)) == 455
    five = task.generate("real", 5, seed=0)
    assert len(five) == 5 and all(meta(e)["source"] == "lichess" for e in five)
    with pytest.raises(ValueError):
        task.generate("validation", 5, seed=0)


# -- the text ----------------------------------------------------------------------------------
def test_texts_use_only_vocabulary_tokens(generated, lichess):
    vocab = set(vocabulary())
    assert len(vocab) == len(vocabulary())
    for example in generated + lichess:
        text = example["prompt"] + example["completion"]
        assert set(text.split()) <= vocab
        assert example["completion"].startswith(" ") and not example["prompt"].endswith(" ")
        board = chess.Board(meta(example)["fen"])
        assert len(example["prompt"].split()) == 4 + 2 * len(board.piece_map())
    # Every legal move of many positions is written in vocabulary tokens, promotions included,
    # and reads back as itself.
    assert len(vocab) == 7 + 12 + 64
    for board in random_positions(40, seed=2) + [chess.Board("8/P6k/8/8/8/8/6Kp/8 w - - 0 1")]:
        for move in board.legal_moves:
            text = encode_move(move.uci())
            assert set(text.split()) <= vocab and len(text.split()) == (3 if move.promotion else 2)
            assert split_moves(text.split()) == [move.uci()]
            assert "".join(text.split()) == move.uci()


def test_the_move_format():
    assert encode_move("e2e4") == "e2 e4" and encode_move("e7e8q") == "e7 e8 q"
    assert encode_line(["h6g4", "e3e4", "d6d5"]) == " h6 g4 e3 e4 d6 d5"
    assert split_moves("e7 e8 q d1 d2 a2 a1 n".split()) == ["e7e8q", "d1d2", "a2a1n"]
    assert split_moves("e2 e4 e7".split()) == ["e2e4", None]  # a lone square is no move
    assert split_moves("e2e4 e7e5".split()) == [None]  # the old one-token format is not read
    assert split_moves("q e2 e4".split()) == [None] and split_moves([]) == []
    assert split_moves("e2 e4 k".split()) == ["e2e4", None]  # k is never a promotion
    assert first_move_text(" e7 e8 q d1 d2") == "e7e8q" and first_move_text(" e2 e4 e5") == "e2e4"
    assert first_move_text(" e2") is None and first_move_text("") is None
    task = ChessMateTask(workers=1)
    assert task.first_step(" g1 f3 junk") == "g1f3" and task.max_words == MOVE_TOKENS == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(chess.SQUARE_NAMES), st.sampled_from(chess.SQUARE_NAMES),
                          st.sampled_from(["", "q", "r", "b", "n"])), max_size=6))
def test_moves_read_back_from_their_tokens(moves):
    """Property: any list of (from, to, promotion) written as text splits back into itself."""
    ucis = [a + b + p for a, b, p in moves]
    assert split_moves(encode_line(ucis).split()) == ucis


def test_prompt_round_trip_and_decisions(generated, lichess):
    for example in generated + lichess[:50]:
        m = meta(example)
        board = chess.Board(m["fen"])
        assert example["prompt"] == encode_prompt(board, m["n"])
        parsed, n, tokens = board_from_text(example["prompt"] + example["completion"])
        assert parsed.fen() == board.fen() and n == m["n"] and split_moves(tokens) == m["line"].split()
        assert example["completion"] == encode_line(m["line"].split())
        decisions = {d["name"]: d for d in example["decisions"]}
        last = m["line"].split()[-1]
        assert decisions["mate_move"]["target"] == last
        assert decisions["mate_square"]["target"] == last[2:4]
        assert decisions["mate_move"]["offset"] == len(example["prompt"])
        assert decisions["mate_move"]["horizon"] == m["n"]
    assert board_from_text("mate 2 white :") is None
    assert board_from_text("hello " * 70) is None
    assert board_from_text("mate 1 white : K e1 k e8 Q") is None  # a piece without its square
    assert board_from_text("mate 1 white : K e1 k e1") is None  # a square named twice
    parsed, n, tokens = board_from_text("mate 1 white : K e1 k e8 q d1 e1 d1")
    assert parsed.fen() == "4k3/8/8/8/8/8/8/3qK3 w - - 0 1" and n == 1 and tokens == ["e1", "d1"]


def test_the_prompt_format():
    board = chess.Board("7k/6p1/4R2p/3r4/5BnP/8/5PP1/6K1 b - - 0 1")  # the module docstring's
    assert encode_prompt(board, 2) == "mate 2 black : k h8 p g7 R e6 p h6 r d5 B f4 n g4 P h4 P f2 P g2 K g1"


# -- playing and judging -------------------------------------------------------------------------
def reference_player(examples):
    """A fake model that plays each example's reference attacker moves."""
    by_prompt = {e["prompt"]: meta(e)["line"].split() for e in examples}

    def complete(texts):
        out = []
        for text in texts:
            prompt = next(p for p in by_prompt if text.startswith(p))
            done = len(split_moves(text[len(prompt):].split()))
            out.append(" " + encode_move(by_prompt[prompt][done]) + " junk")
        return out
    return complete


def test_play_with_reference_moves_succeeds(generated, lichess):
    task = ChessMateTask(workers=1)
    examples = generated + lichess[::15]
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return reference_player(examples)(texts)
    transcripts = task.play(examples, counting)
    assert transcripts == [e["completion"] for e in examples]
    assert all(task.check(e, t) for e, t in zip(examples, transcripts))
    assert len(calls) == 3 and calls[0] == len(examples)  # one batched call per turn


def test_play_with_garbage_fails_without_exceptions(generated):
    task = ChessMateTask(workers=1)
    for answer in ("", "   ", "garbage", "e2e4", "e2", "0000", "a1 a1", "q e2 e4", "zz99 e2 e4", "<eos>", "\n"):
        transcripts = task.play(generated, lambda texts, a=answer: [a] * len(texts))
        assert not any(task.check(e, t) for e, t in zip(generated, transcripts))
    wrong_count = task.play(generated[:2], lambda texts: [])  # a broken model returns too few
    assert wrong_count == ["", ""]


def test_random_mover_is_a_legal_deterministic_baseline(generated):
    task = ChessMateTask(workers=1)
    first = task.play(generated, random_mover(0))
    assert first == task.play(generated, random_mover(0))
    for example, transcript in zip(generated, first):
        board = chess.Board(meta(example)["fen"])
        assert transcript == encode_line(split_moves(transcript.split()))
        for uci in split_moves(transcript.split()):
            assert chess.Move.from_uci(uci) in board.legal_moves
            board.push_uci(uci)


@given(st.text(max_size=80))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_check_and_targets_never_raise(lichess, text):
    task = ChessMateTask(workers=1)
    example = lichess[0]
    assert task.check(example, text) in (True, False)
    assert task.target_from_completion(example, text, "mate_move") is None or isinstance(
        task.target_from_completion(example, text, "mate_move"), str)


def test_check_rules(lichess):
    task = ChessMateTask(workers=1)
    def replies(example):
        board = chess.Board(meta(example)["fen"])
        board.push_uci(meta(example)["line"].split()[0])
        return [m.uci() for m in board.legal_moves]
    mate2 = next(e for e in lichess if meta(e)["n"] == 2 and len(replies(e)) > 1)
    line = meta(mate2)["line"].split()
    assert task.check(mate2, encode_line(line))
    assert task.check(mate2, "  " + "   ".join(encode_line(line).split()) + " \n")  # any whitespace
    assert not task.check(mate2, " " + " ".join(line))  # the old one-token UCI format
    assert not task.check(mate2, encode_line(line) + " e2 e4")  # moves after the mate
    assert not task.check(mate2, encode_line(line) + " e2")  # a token after the mate
    assert not task.check(mate2, encode_line(line)[:-3])  # the mating move cut in half
    assert not task.check(mate2, encode_line(line[:2]))  # stops before the mate
    others = [m for m in replies(mate2) if m != line[1]]
    assert not task.check(mate2, encode_line([line[0], others[0], line[2]]))  # not the stubborn reply
    assert not task.check({"meta": "{}"}, " e2 e4")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_check_accepts_only_a_forced_line_of_whole_moves(lichess, data):
    """Property: edit one token of a reference completion (drop it, insert any vocabulary
    token, replace it, or join a move's two squares into one UCI word); whenever the verifier
    still accepts it, the tokens split into whole legal moves that force mate (by the
    independent line verifier), with nothing left over."""
    task = ChessMateTask(workers=1)
    example = data.draw(st.sampled_from(lichess))
    m = meta(example)
    tokens = example["completion"].split()
    assert task.check(example, example["completion"])
    i = data.draw(st.integers(0, len(tokens) - 1))
    op = data.draw(st.sampled_from(["drop", "insert", "replace", "join"]))
    word = data.draw(st.sampled_from(vocabulary()))
    if op == "drop":
        edited = tokens[:i] + tokens[i + 1:]
    elif op == "insert":
        edited = tokens[:i] + [word] + tokens[i:]
    elif op == "replace":
        edited = tokens[:i] + [word] + tokens[i + 1:]
    else:  # join: the from- and to-square of one move as one word
        starts, k = [], 0
        while k < len(tokens):
            starts.append(k)
            k += 3 if k + 2 < len(tokens) and tokens[k + 2] in "qrbn" else 2
        j = data.draw(st.sampled_from(starts))
        edited = tokens[:j] + [tokens[j] + tokens[j + 1]] + tokens[j + 2:]
    moves = split_moves(edited)
    accepted = task.check(example, " " + " ".join(edited))
    if accepted:
        assert None not in moves and verify_solution(m["fen"], moves, m["n"])
        assert encode_line(moves).split() == edited
    assert not (op == "join" and accepted)


def test_targets_from_transcripts(lichess):
    task = ChessMateTask(workers=1)
    mate2 = next(e for e in lichess if meta(e)["n"] == 2)
    line = meta(mate2)["line"].split()
    full = encode_line(line)
    assert task.target_from_completion(mate2, full, "mate_move") == line[-1]
    assert task.target_from_completion(mate2, full, "mate_square") == line[-1][2:4]
    assert task.target_from_completion(mate2, encode_line(line[:1]), "mate_move") == line[0]  # no mate: last move
    assert task.target_from_completion(mate2, " " + line[0], "mate_move") is None  # one UCI word is no move
    assert task.target_from_completion(mate2, " nonsense", "mate_square") is None
    assert task.target_from_completion(mate2, "", "mate_move") is None


def test_lichess_loader_reports_bad_rows(tmp_path):
    header = "PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags\n"
    good = open(LICHESS_SAMPLE).read().splitlines()[1]
    rows = [
        good,
        "badfen,not a fen,h8g8 f1f8,600,80,100,10,mate mateIn1,,",
        "illegal,6Qk/p1p3pp/4N3/1p6/2q1r1n1/2B5/PP4PP/3R1R1K b - - 0 28,a1a2 f1f8,600,80,100,10,mateIn1,,",
        "count,6Qk/p1p3pp/4N3/1p6/2q1r1n1/2B5/PP4PP/3R1R1K b - - 0 28,h8g8,600,80,100,10,mateIn1,,",
        "wrong,6Qk/p1p3pp/4N3/1p6/2q1r1n1/2B5/PP4PP/3R1R1K b - - 0 28,h8g8 f1f7,600,80,100,10,mateIn1,,",
        "short,6Qk/p1p3pp",
        "notmate,6Qk/p1p3pp/4N3/1p6/2q1r1n1/2B5/PP4PP/3R1R1K b - - 0 28,h8g8 f1f8,600,80,100,10,fork,,",
    ]
    path = tmp_path / "puzzles.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    examples, errors = load_lichess_csv(path)
    assert len(examples) == 1
    assert sorted(e.split(":")[0] for e in errors) == ["badfen", "count", "illegal", "wrong"]
    report = check_lichess_file(path)
    assert report.total == 5 and report.verified == 1 and len(report.failures) == 4
    assert not report.ok and report.by_group["unreadable"] == [0, 3]


@pytest.mark.skipif(stockfish_path() is None, reason="stockfish is not installed")
def test_stockfish_candidates_are_still_judged_by_python_chess():
    records = chunk_puzzles(1, 0, 6, "stockfish")
    assert records
    for record in records:
        board, n, line = chess.Board(record["fen"]), record["n"], record["line"].split()
        assert verify_solution(record["fen"], line, n)
        assert [m.uci() for m in MateSolver().winning_moves(board, n)] == [line[0]]
