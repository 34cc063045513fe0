"""Mate search with python-chess: the one judge of chess truth for the chess-mate task.

Words used throughout:

- the *attacker* is the side to move at the start of a puzzle, the *defender* the other;
- "mate in n" means the attacker mates in at most n of its own moves against every defence
  (so a mate in 1 is also a mate in 2);
- a *line* is a list of moves, attacker and defender alternating, starting with the attacker.

Everything here is exact (no evaluation, no depth-limited pruning): a search answers the
question it is asked for every legal move of both sides. Speed comes only from move
ordering, a transposition table and a fast generator of checking moves (the last attacker
move of a mate is always a check, so the leaves of every search look at checks only).
Draw rules (repetition, fifty moves) are ignored: within three moves they cannot apply to a
puzzle, and a stalemate counts as a failure to mate.
"""

from __future__ import annotations

from typing import Iterable

import chess

# Piece values, only to order captures (bigger victims first).
_VALUE = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9, chess.KING: 0}


def _discovery_blockers(board: chess.Board, king: chess.Square) -> int:
    """Attacker pieces that are the only piece between the defender's king and an attacker slider.

    Moving such a piece off the line gives a discovered check.
    """
    us = board.turn
    snipers = ((chess.BB_RANK_ATTACKS[king][0] | chess.BB_FILE_ATTACKS[king][0]) & (board.rooks | board.queens)
               | chess.BB_DIAG_ATTACKS[king][0] & (board.bishops | board.queens)) & board.occupied_co[us]
    blockers = 0
    for sniper in chess.scan_reversed(snipers):
        between = chess.between(king, sniper) & board.occupied
        if between and chess.BB_SQUARES[chess.msb(between)] == between:
            blockers |= between
    return blockers & board.occupied_co[us]


def checking_moves(board: chess.Board) -> list[chess.Move]:
    """Every legal move of the side to move that gives check (exactly, in a fixed order).

    Instead of trying every move (push, test, pop), it asks the legal-move generator only for
    moves onto squares that attack the enemy king, plus the rare kinds of check (discovered,
    promotion, castling, en passant) which it confirms one by one with ``gives_check``.
    """
    us = board.turn
    king = board.king(not us)
    if king is None:
        return []
    occ = board.occupied
    ours = board.occupied_co[us]
    diag = chess.BB_DIAG_ATTACKS[king][chess.BB_DIAG_MASKS[king] & occ]
    line = (chess.BB_RANK_ATTACKS[king][chess.BB_RANK_MASKS[king] & occ]
            | chess.BB_FILE_ATTACKS[king][chess.BB_FILE_MASKS[king] & occ])
    promoting = chess.BB_RANK_7 if us == chess.WHITE else chess.BB_RANK_2
    pawns = board.pawns & ours

    # A knight, pawn or slider that lands on a square attacking the king gives check: the
    # squares are computed with the current occupancy, which is exact because a slider that
    # could see the king "through" its own start square would already be giving check.
    # One call of the move generator (its set-up is the expensive part), then a filter.
    targets = {
        chess.PAWN: chess.BB_PAWN_ATTACKS[not us][king],
        chess.KNIGHT: chess.BB_KNIGHT_ATTACKS[king],
        chess.BISHOP: diag,
        chess.ROOK: line,
        chess.QUEEN: diag | line,
        chess.KING: 0,
    }
    movers = (pawns & ~promoting) | (ours & ~board.pawns & ~board.kings)
    out: list[chess.Move] = []
    seen: set[chess.Move] = set()
    every_target = targets[chess.PAWN] | targets[chess.KNIGHT] | targets[chess.QUEEN]
    if movers and every_target:
        piece_type_at = board.piece_type_at
        for move in board.generate_legal_moves(movers, every_target):
            if targets[piece_type_at(move.from_square)] & chess.BB_SQUARES[move.to_square]:
                out.append(move)
                seen.add(move)
    # The rare kinds: confirm each candidate by playing it.
    rare_from = _discovery_blockers(board, king) | (pawns & promoting)
    if board.castling_rights & ours:
        rare_from |= board.kings & ours
    if board.ep_square is not None:
        rare_from |= pawns
    if rare_from:
        for move in board.generate_legal_moves(rare_from):
            if move not in seen and board.gives_check(move):
                out.append(move)
                seen.add(move)
    return out


def _king_can_flee(board: chess.Board, move: chess.Move) -> bool:
    """After the side to move plays ``move``, does the enemy king have a square to step to
    that nothing attacks? True proves ``move`` is not mate, without playing it (the common
    case, and playing a move is what makes a mate test slow). False proves nothing. Castling
    and en passant, which move a second piece, always answer False."""
    if board.is_castling(move) or board.is_en_passant(move):
        return False
    us, them = board.turn, not board.turn
    king = board.king(them)
    gone, landed = ~chess.BB_SQUARES[move.from_square], chess.BB_SQUARES[move.to_square]
    moved = move.promotion or board.piece_type_at(move.from_square)

    def after(piece_type: int) -> int:  # the attacker's pieces of a type once the move is made
        return (board.pieces_mask(piece_type, us) & gone) | (landed if moved == piece_type else 0)

    pawns, knights, kings = after(chess.PAWN), after(chess.KNIGHT), after(chess.KING)
    queens = after(chess.QUEEN)
    diagonal, straight = after(chess.BISHOP) | queens, after(chess.ROOK) | queens
    # Sliders see through the square the king leaves: stepping back along a check is no escape.
    occupied = ((board.occupied & gone) | landed) & ~chess.BB_SQUARES[king]
    flights = chess.BB_KING_ATTACKS[king] & ~(board.occupied_co[them] & ~landed)
    for square in chess.scan_forward(flights):
        if (chess.BB_KNIGHT_ATTACKS[square] & knights or chess.BB_PAWN_ATTACKS[them][square] & pawns
                or chess.BB_KING_ATTACKS[square] & kings
                or chess.BB_DIAG_ATTACKS[square][chess.BB_DIAG_MASKS[square] & occupied] & diagonal
                or (chess.BB_RANK_ATTACKS[square][chess.BB_RANK_MASKS[square] & occupied]
                    | chess.BB_FILE_ATTACKS[square][chess.BB_FILE_MASKS[square] & occupied]) & straight):
            continue
        return True
    return False


def is_mate(board: chess.Board, check: chess.Move) -> bool:
    """Does the checking move ``check`` (legal, giving check) mate?"""
    if _king_can_flee(board, check):
        return False
    board.push(check)
    mate = not any(board.generate_legal_moves())
    board.pop()
    return mate


def mating_moves(board: chess.Board) -> list[chess.Move]:
    """Every legal move that checkmates at once."""
    return [move for move in checking_moves(board) if is_mate(board, move)]


def _has_mate_in_1(board: chess.Board) -> bool:
    return any(is_mate(board, move) for move in checking_moves(board))


class MateSolver:
    """An exact mate-in-n search with a transposition table kept across calls.

    One solver is meant for one puzzle (or a few related positions): its table grows with
    every search. ``mate_in(board, n)`` is the core question; the other methods build on it.
    """

    def __init__(self, moves: str = "all") -> None:
        # "all": an exact search. "checks": the attacker only tries checks, a cheap search
        # that finds many puzzle mates and proves nothing when it finds none (it picks
        # candidates, it never judges them).
        self.moves = moves
        # position key -> (largest n known NOT to mate, smallest n known to mate); mate in n
        # is monotone in n, so one proof or disproof answers many later questions.
        self.table: dict[object, tuple[int, int]] = {}
        # Defender replies that refuted an attacker move, by remaining depth: the same
        # refutation (a king step, capturing the checker) usually refutes the next try too.
        self.killers: dict[int, list[chess.Move]] = {}
        self.leaves: dict[object, bool] = {}  # mate in 1 or not, by position

    # -- attacker to move -------------------------------------------------------------
    def mate_in(self, board: chess.Board, n: int) -> bool:
        """Does the side to move force mate in at most ``n`` moves?"""
        if n <= 0:
            return False
        key = board._transposition_key()  # the position without move counters (python-chess)
        if n == 1:
            known = self.leaves.get(key)
            if known is None:
                known = self.leaves[key] = _has_mate_in_1(board)
            return known
        lo, hi = self.table.get(key, (0, 99))
        if n <= lo:
            return False
        if n >= hi:
            return True
        found = False
        for move in self.ordered_attacks(board):
            board.push(move)
            found = self.defender_lost(board, n - 1)
            board.pop()
            if found:
                break
        lo, hi = self.table.get(key, (0, 99))
        self.table[key] = (lo, min(hi, n)) if found else (max(lo, n), hi)
        return found

    def ordered_attacks(self, board: chess.Board) -> list[chess.Move]:
        """Legal moves, most forcing first: checks, then captures by victim value, then the rest."""
        checks = checking_moves(board)
        if self.moves == "checks":
            return checks
        first = set(checks)
        captures, quiet = [], []
        for move in board.generate_legal_moves():
            if move in first:
                continue
            victim = board.piece_type_at(move.to_square)
            if victim or move.promotion:
                captures.append((-(_VALUE[victim] if victim else 0) - (move.promotion or 0), move))
            else:
                quiet.append(move)
        captures.sort(key=lambda item: item[0])
        return checks + [m for _, m in captures] + quiet

    # -- defender to move ---------------------------------------------------------------
    def defender_lost(self, board: chess.Board, n: int) -> bool:
        """With the defender to move: is it mated now, or mated in at most ``n`` whatever it plays?"""
        killers = self.killers.setdefault(n, [])
        if n > 0:
            # Try the known refutations before generating every reply: most disproofs end here.
            for killer in killers:
                if board.is_legal(killer):
                    board.push(killer)
                    mated = self.mate_in(board, n)
                    board.pop()
                    if not mated:
                        return False
        replies = list(board.generate_legal_moves())
        if not replies:
            return board.is_check()
        if n <= 0:
            return False
        for reply in replies:
            if reply in killers:
                continue  # already shown to lose
            board.push(reply)
            mated = self.mate_in(board, n)
            board.pop()
            if not mated:
                killers.insert(0, reply)
                del killers[2:]
                return False
        return True

    # -- questions built on the core ------------------------------------------------------
    def mate_distance(self, board: chess.Board, n: int) -> int | None:
        """Smallest k <= n such that the side to move mates in k, or None."""
        for k in range(1, n + 1):
            if self.mate_in(board, k):
                return k
        return None

    def reply_distance(self, board: chess.Board, n: int) -> int | None:
        """With the defender to move: 0 if it is mated, else the number of attacker moves the
        attacker needs to mate against the best defence (<= n), or None if it cannot mate in n."""
        if board.is_checkmate():
            return 0
        for k in range(1, n + 1):
            if self.defender_lost(board, k):
                return k
        return None

    def winning_moves(self, board: chess.Board, n: int, limit: int = 99) -> list[chess.Move]:
        """The attacker's moves that force mate in at most ``n`` (stops after ``limit`` found)."""
        out = []
        for move in self.ordered_attacks(board):
            board.push(move)
            wins = self.defender_lost(board, n - 1)
            board.pop()
            if wins:
                out.append(move)
                if len(out) >= limit:
                    break
        return out

    def stubborn_reply(self, board: chess.Board, n: int) -> chess.Move | None:
        """The defender's reply that delays mate the longest when the attacker has ``n`` moves
        left; a reply that escapes mate altogether beats any delay. Ties go to the lowest UCI
        string, so the choice is deterministic. None when the defender has no legal move."""
        best, best_score = None, -1
        for reply in sorted(board.generate_legal_moves(), key=lambda m: m.uci()):
            board.push(reply)
            escapes = not self.mate_in(board, n)
            score = n + 1 if escapes else self.mate_distance(board, n)
            board.pop()
            if escapes:
                return reply  # nothing is more stubborn, and no lower UCI string is
            if score > best_score:
                best, best_score = reply, score
        return best


def forces_mate(board: chess.Board, n: int) -> bool:
    """Does the side to move mate in at most ``n`` moves against every defence?"""
    return MateSolver().mate_in(board.copy(stack=False), n)


def verify_line(board: chess.Board, moves: Iterable[str], n: int, solver: MateSolver | None = None) -> bool:
    """Is ``moves`` (UCI, attacker first) a forced mate in at most ``n`` from ``board``?

    Every move must be legal; after each attacker move, every defender reply (not only the
    one in the line) must still lose within the attacker's remaining moves; the line must end
    with the attacker's checkmating move. ``board`` is not modified.
    """
    solver = solver or MateSolver()
    board = board.copy(stack=False)
    moves = list(moves)
    if not moves or len(moves) % 2 == 0 or (len(moves) + 1) // 2 > n:
        return False
    for i, text in enumerate(moves):
        try:
            move = chess.Move.from_uci(text)
        except (ValueError, TypeError):
            return False
        if not board.is_legal(move):
            return False
        board.push(move)
        if i % 2 == 0:  # an attacker move: the defence must be lost whatever it does
            left = n - i // 2 - 1
            if not solver.defender_lost(board, left):
                return False
    return board.is_checkmate()


def verify_solution(fen: str, moves_uci: Iterable[str] | str, n: int) -> bool:
    """Is the line ``moves_uci`` (a list or a space-separated string) a forced mate in at most
    ``n`` from the position ``fen``, attacker to move? Never raises on bad input."""
    try:
        board = chess.Board(fen)
    except (ValueError, TypeError):
        return False
    if isinstance(moves_uci, str):
        moves_uci = moves_uci.split()
    return verify_line(board, moves_uci, n)
