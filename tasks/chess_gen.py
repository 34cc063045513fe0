"""Generating mate-in-N puzzles (N = 1, 2, 3) with python-chess alone.

Random play almost never reaches a mate, so the source is games played by a noisy greedy
policy that likes captures, checks and squares near the enemy king; most such games end in
checkmate. The positions a few moves before that mate (the mating side to move) are the
candidates, and an exact search decides which of them are puzzles:

- mate in 1: exactly one move mates;
- mate in 2 or 3: the side to move mates in N against every defence, in no fewer, and
  exactly one first move does so (as in Lichess puzzles).

Finding a mate in 2 is cheap enough to search every candidate in full; for a mate in 3 a
checks-only search (every attacker move a check) picks the candidates and the full search
judges them, so the mates in 3 here all start with a check... no: they may start with any
move the checks-only search did not need; see ``_mate3_candidate``.

The puzzle stream of a seed is a pure function of (seed, game index): game ``g`` uses its
own random generator, and the puzzles come out in game order. Work is split into chunks of
games, so the result is the same for any number of worker processes and any chunk size, a
run can be resumed from cached chunks, and a bigger request only extends the stream.

Castling rights and en passant are dropped from every candidate (the prompt has no place for
them), so no generated puzzle depends on them.
"""

from __future__ import annotations

import random

import chess

from tasks.chess_search import MateSolver, checking_moves, mating_moves

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
            score += 4
            board.push(move)
            if not any(board.generate_legal_moves()):
                score += 10_000
            board.pop()
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
    check. It finds most short mates at a few percent of the cost of a full search; a
    position it misses is only a puzzle lost, never a wrong one, since the full search
    judges every candidate."""
    return MateSolver("checks").mate_in(board, 3)


def reference_line(board: chess.Board, n: int, first: chess.Move, solver: MateSolver) -> list[str]:
    """The solution line the harness plays out: ``first``, then the defender's most stubborn
    reply, then the attacker's quickest mating continuation (lowest UCI among equals)."""
    board = board.copy(stack=False)
    line = [first]
    board.push(first)
    left = n - 1
    while not board.is_checkmate():
        reply = solver.stubborn_reply(board, left)
        board.push(reply)
        line.append(reply)
        distance = solver.mate_distance(board, left)
        if distance is None:  # cannot happen for a verified first move
            raise RuntimeError(f"line lost the mate: {board.fen()}")
        move = min(solver.winning_moves(board, distance), key=lambda m: m.uci())
        board.push(move)
        line.append(move)
        left -= 1
    return [m.uci() for m in line]


def analyse(board: chess.Board) -> dict | None:
    """If ``board`` (side to move attacking) is a puzzle, its record, else None.

    A puzzle has a mate in N (1 to 3), none shorter, and exactly one first move that mates
    in N.
    """
    mates = mating_moves(board)
    if mates:
        if len(mates) > 1:
            return None
        n, first, solver = 1, mates[0], MateSolver()
    else:
        solver = MateSolver()
        if solver.mate_in(board, 2):
            n = 2
        elif _mate3_candidate(board) and solver.mate_in(board, 3):
            n = 3
        else:
            return None
        winners = solver.winning_moves(board, n, limit=2)
        if len(winners) != 1:
            return None
        first = winners[0]
    line = reference_line(board, n, first, solver)
    return {"fen": canonical_fen(board), "n": n, "line": " ".join(line)}


def game_puzzles(seed: int, game: int) -> list[dict]:
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
        record = analyse(board)
        if record and record["fen"] not in seen:
            seen.add(record["fen"])
            out.append(record)
    return out


def chunk_puzzles(seed: int, start: int, stop: int) -> list[dict]:
    """Puzzles of games ``start`` to ``stop - 1``, each tagged with its game number."""
    out = []
    for game in range(start, stop):
        for record in game_puzzles(seed, game):
            out.append({**record, "game": game})
    return out
