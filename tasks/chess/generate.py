"""Generating mate-in-N puzzles (N = 1, 2, 3), with python-chess as the judge.

Random play almost never reaches a mate, so the source is games played by a noisy greedy
policy that likes captures, checks and squares near the enemy king; most such games end in
checkmate. The mating side's positions in the last few moves before that mate are the
candidates, and an exact search decides which of them are puzzles: the side to move mates
in N against every defence, in no fewer moves, and exactly one first move does so (for a
mate in 1: exactly one move mates).

Searching every candidate in full for a mate in 2 is cheap; for a mate in 3 it is not, so a
checks-only search (every attacker move a check) picks the candidates and the full search
judges them: mates in 3 whose quiet moves that search cannot see are missed, never
mislabelled. With ``engine="stockfish"`` (Debian's stockfish, if installed) the engine picks
the mate-in-2 and 3 candidates instead (it sees quiet moves, but at its fixed depth it also
misses some mates the python search finds, and it was no faster here: see
bench/bench_chess_generation.py); python-chess still judges every puzzle, but the stream
differs, so the engine is part of the cache key. The default, "python", needs nothing but
python-chess and gives the same puzzles on every machine.

The puzzle stream of a seed is a pure function of (seed, engine, game number): game ``g``
has its own random generator and the puzzles come out in game order. tasks/chess/stream.py
cuts the work into chunks of games, so the result is the same for any number of worker
processes and any chunk size, an interrupted run resumes from the cached chunks, and a
bigger request only extends the stream.

Castling rights and en passant are dropped from every candidate (the prompt has no place
for them), so no generated puzzle depends on them.
"""

from __future__ import annotations

import os
import random
import shutil
from contextlib import contextmanager
from typing import Iterator

import chess

from tasks.chess.search import MateSolver, checking_moves, is_mate, mating_moves

_VALUE = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9, chess.KING: 0}
MAX_PLIES = 240
# Plies before the final mate at which the mating side's positions are tried: 1 for a mate
# in 1, 3 for a mate in 2, ... and a few earlier ones, where a quicker forced mate is often
# hiding that the greedy players missed.
BACKS = (1, 3, 5, 7, 9, 11)


def canonical_fen(board: chess.Board) -> str:
    """The FEN that names a puzzle: no castling rights, no en passant, counters reset."""
    b = board.copy(stack=False)
    b.castling_rights = chess.BB_EMPTY
    b.ep_square = None
    b.halfmove_clock, b.fullmove_number = 0, 1
    return b.fen()


# -- playing games ----------------------------------------------------------------------
def greedy_move(board: chess.Board, rng: random.Random, noise: float) -> chess.Move:
    """A one-ply greedy move: mate if possible, win material, avoid putting the moved piece
    on an attacked square, give checks, come closer to the enemy king; Gaussian noise of
    scale ``noise`` on top."""
    them = not board.turn
    enemy_king = board.king(them)
    attacked = 0  # squares the opponent attacks now (a cheap stand-in for "after the move")
    for square in chess.scan_reversed(board.occupied_co[them]):
        attacked |= board.attacks_mask(square)
    checks = set(checking_moves(board))
    best, best_score = None, -1e18
    for move in board.generate_legal_moves():
        score = rng.gauss(0.0, noise) - 0.3 * chess.square_distance(move.to_square, enemy_king)
        victim = board.piece_type_at(move.to_square)
        if victim:
            score += 10 * _VALUE[victim]
        if move.promotion:
            score += 8 * _VALUE[move.promotion]
        if attacked & chess.BB_SQUARES[move.to_square]:
            score -= 8 * _VALUE[board.piece_type_at(move.from_square)]
        if move in checks:
            score += 10_004 if is_mate(board, move) else 4
        if score > best_score:
            best, best_score = move, score
    return best


def play_game(rng: random.Random) -> tuple[list[chess.Board], bool]:
    """One game of the greedy policy (a few random opening plies, a noise level per side).

    Returns the positions before each move (a copy each) and whether it ended in checkmate.
    """
    board = chess.Board()
    noise = (rng.choice((1.0, 3.0, 6.0, 12.0, 30.0)), rng.choice((1.0, 3.0, 6.0, 12.0, 30.0)))
    opening = rng.randrange(0, 9)
    history = []
    while board.ply() < MAX_PLIES and not board.is_game_over(claim_draw=False):
        history.append(board.copy(stack=False))
        if board.ply() < opening:
            move = rng.choice(list(board.generate_legal_moves()))
        else:
            move = greedy_move(board, rng, noise[board.ply() % 2])
        board.push(move)
    return history, board.is_checkmate()


# -- judging candidates -----------------------------------------------------------------
def _mate3_candidate(board: chess.Board) -> bool:
    """A cheap hint that the side to move mates in 3: a mate where every attacker move is a
    check. It finds about half of the unique mates in 3 at a few percent of the cost of a
    full search; a position it misses is only a puzzle lost, never a wrong one, since the
    full search judges every candidate."""
    return MateSolver("checks").mate_in(board, 3)


def stockfish_path() -> str | None:
    """The stockfish binary, if installed (Debian puts it in /usr/games, often not on PATH)."""
    found = shutil.which("stockfish")
    if found:
        return found
    return "/usr/games/stockfish" if os.access("/usr/games/stockfish", os.X_OK) else None


# Stockfish's search for a candidate: deep enough for a mate in 3 (5 plies) with room for
# its pruning; a fixed depth, one thread and a fresh hash per position keep it deterministic.
STOCKFISH_LIMIT = {"depth": 8, "mate": 3}


@contextmanager
def engine_session(engine: str) -> Iterator[object | None]:
    """A running stockfish for ``engine == "stockfish"`` (always quit afterwards), else None."""
    if engine != "stockfish":
        yield None
        return
    import chess.engine

    path = stockfish_path()
    if path is None:
        raise RuntimeError("stockfish is not installed")
    sf = chess.engine.SimpleEngine.popen_uci(path)
    try:
        sf.configure({"Threads": 1, "Hash": 16})
        yield sf
    finally:
        sf.quit()


def _stockfish_mate(sf, board: chess.Board) -> int | None:
    """Stockfish's claim that the side to move mates in k <= 3 (k), else None."""
    import chess.engine

    info = sf.analyse(board, chess.engine.Limit(**STOCKFISH_LIMIT), game=object())  # new game: clean hash
    score = info["score"].relative
    mate = score.mate() if score.is_mate() else None
    return mate if mate is not None and 0 < mate <= 3 else None


def reference_line(board: chess.Board, n: int, first: chess.Move, solver: MateSolver,
                   preferred: list[str] | None = None) -> list[str]:
    """The solution line the harness plays out: ``first``, then the defender's most stubborn
    reply, then the attacker's quickest mating continuation: the move of ``preferred`` (a
    given solution, e.g. Lichess's) while the line still follows it and that move is among
    the quickest, else the lowest UCI string among them."""
    board = board.copy(stack=False)
    line = [first]
    board.push(first)
    left = n - 1
    while not board.is_checkmate():
        reply = solver.stubborn_reply(board, left)
        if reply is None:
            raise ValueError(f"stalemate, not mate: {board.fen()}")
        board.push(reply)
        line.append(reply)
        distance = solver.mate_distance(board, left)
        if distance is None:
            raise ValueError(f"the line lost the mate: {board.fen()}")
        winners = solver.winning_moves(board, distance)
        ucis = [m.uci() for m in line]
        if preferred and ucis == preferred[:len(ucis)] and len(preferred) > len(ucis) \
                and chess.Move.from_uci(preferred[len(ucis)]) in winners:
            move = chess.Move.from_uci(preferred[len(ucis)])
        else:
            move = min(winners, key=lambda m: m.uci())
        board.push(move)
        line.append(move)
        left -= 1
    return [m.uci() for m in line]


def analyse(board: chess.Board, sf=None) -> dict | None:
    """If ``board`` (side to move attacking) is a puzzle, its record, else None.

    A puzzle has a mate in N (1 to 3), none shorter, and exactly one first move that mates
    in N. ``sf``, a running stockfish, picks the mate-in-2 and 3 candidates if given.
    """
    mates = mating_moves(board)
    if mates:
        if len(mates) > 1:
            return None
        n, first, solver = 1, mates[0], MateSolver()
    else:
        solver = MateSolver()
        if sf is not None:
            if _stockfish_mate(sf, board) is None:
                return None
            n = 2 if solver.mate_in(board, 2) else (3 if solver.mate_in(board, 3) else 0)
        elif solver.mate_in(board, 2):
            n = 2
        elif _mate3_candidate(board) and solver.mate_in(board, 3):
            n = 3
        else:
            n = 0
        if not n:
            return None
        winners = solver.winning_moves(board, n, limit=2)
        if len(winners) != 1:
            return None
        first = winners[0]
    line = reference_line(board, n, first, solver)
    return {"fen": canonical_fen(board), "n": n, "line": " ".join(line)}


def game_puzzles(seed: int, game: int, sf=None) -> list[dict]:
    """The puzzles that game number ``game`` of seed ``seed`` yields, in a fixed order."""
    rng = random.Random(f"chess-mate:{seed}:{game}")
    history, mated = play_game(rng)
    if not mated:
        return []
    out, seen = [], set()
    for back in BACKS:
        if back > len(history):
            break
        board = history[-back].copy(stack=False)
        board.castling_rights = chess.BB_EMPTY
        board.ep_square = None
        if board.is_game_over(claim_draw=False):
            continue
        record = analyse(board, sf)
        if record and record["fen"] not in seen:
            seen.add(record["fen"])
            out.append(record)
    return out


def chunk_puzzles(seed: int, start: int, stop: int, engine: str = "python") -> list[dict]:
    """Puzzles of games ``start`` to ``stop - 1``, in order, each tagged with its game number."""
    out = []
    with engine_session(engine) as sf:
        for game in range(start, stop):
            for record in game_puzzles(seed, game, sf):
                out.append({**record, "game": game})
    return out
