"""Real puzzles: the Lichess puzzle CSV (PuzzleId, FEN, Moves, Rating, ..., Themes, ...).

Only the mateIn1/2/3 rows are read. The Lichess FEN is the position *before* the
opponent's move, the first of ``Moves``; the puzzle starts after it. The shipped sample
(``data/lichess_mates_dev.csv``, 455 puzzles) is the task's "real" split.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path
from typing import Iterator

import chess

from tasks.base import CheckReport
from tasks.chess.generate import canonical_fen, reference_line
from tasks.chess.search import MateSolver, verify_line, verify_solution
from tasks.chess.text import build_example, parse_move

LICHESS_SAMPLE = Path(__file__).parent / "data" / "lichess_mates_dev.csv"
_MATE_THEMES = ("mateIn1", "mateIn2", "mateIn3")


def _lichess_puzzle(row: dict) -> tuple[chess.Board, int, list[str]]:
    """The position (after the opponent's move), N and the solution of a Lichess CSV row;
    raises ValueError saying what is wrong."""
    themes = (row.get("Themes") or "").split()
    n = next(int(t[-1]) for t in themes if t in _MATE_THEMES)
    try:
        board = chess.Board(row.get("FEN") or "")
    except ValueError as error:
        raise ValueError(f"bad FEN ({error})") from None
    moves = (row.get("Moves") or "").split()
    if len(moves) != 2 * n:
        raise ValueError(f"mateIn{n} needs {2 * n} moves (the opponent's and the solution), got {len(moves)}")
    opening = parse_move(moves[0])
    if opening is None or not board.is_legal(opening):
        raise ValueError(f"the opponent's move {moves[0]} is not legal")
    board.push(opening)
    return board.copy(stack=False), n, moves[1:]


def _mate_rows(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """(PuzzleId, row) of every mateIn1/2/3 row of a Lichess puzzle CSV."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            themes = (row.get("Themes") or "").split()
            if any(t in _MATE_THEMES for t in themes):
                yield (row.get("PuzzleId") or "").strip() or f"line {number}", row


def load_lichess_csv(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Examples from a Lichess puzzle CSV, and an error ``"PUZZLEID: reason"`` for each
    mate row that is malformed or whose solution does not verify with castling and en
    passant dropped (as the prompt shows the position)."""
    examples, errors = [], []
    for puzzle_id, row in _mate_rows(path):
        try:
            board, n, solution = _lichess_puzzle(row)
            shown = chess.Board(canonical_fen(board))
            solver = MateSolver()
            if not verify_line(shown, solution, n, solver):
                raise ValueError(f"the solution does not force mate in {n} (castling and en passant dropped)")
            line = reference_line(shown, n, chess.Move.from_uci(solution[0]), solver, preferred=solution)
            meta = {"source": "lichess", "puzzle_id": puzzle_id, "lichess_line": " ".join(solution),
                    "rating": int(row["Rating"]) if (row.get("Rating") or "").strip().isdigit() else None}
            examples.append(build_example(f"lichess-{puzzle_id}", shown, n, line, meta))
        except Exception as error:  # one bad row must never stop the others
            errors.append(f"{puzzle_id}: {error}")
    return examples, errors


def check_lichess_file(path: str | os.PathLike) -> CheckReport:
    """Verify every mateIn1/2/3 puzzle of a Lichess CSV with python-chess, on its own FEN
    (castling and en passant as given), by group "mate1".."mate3" ("unreadable": a row
    that is not a puzzle). Raises OSError if the file cannot be read."""
    report = CheckReport("puzzles")
    for puzzle_id, row in _mate_rows(path):
        try:
            board, n, solution = _lichess_puzzle(row)
        except Exception as error:  # a malformed row is a failure, not a crash
            report.add("unreadable", False, f"{puzzle_id}: {error}")
            continue
        report.add(f"mate{n}", verify_solution(board.fen(), solution, n),
                   f"{puzzle_id}: the solution does not force mate in {n}")
    return report


@functools.lru_cache(maxsize=1)
def sample_examples() -> list[dict]:
    """The shipped sample as examples (the "real" split)."""
    return load_lichess_csv(LICHESS_SAMPLE)[0]
