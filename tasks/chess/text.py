"""The text of a chess example, and what its meta holds.

Text format (space-separated tokens, so a word-level tokenizer encodes it exactly). A mate
in 2 for black (rook d5 to d1 check, the white rook e6 to e1 blocks, rook d1 takes e1 mate;
FEN ``7k/6p1/4R2p/3r4/5BnP/8/5PP1/6K1 b``, from the Lichess sample):

    prompt      mate 2 black : k h8 p g7 R e6 p h6 r d5 B f4 n g4 P h4 P f2 P g2 K g1
    completion   d5 d1 e6 e1 d1 e1

- The prompt is ``mate N SIDE :`` followed by the pieces, each as two tokens, its FEN letter
  (``PNBRQK`` white, ``pnbrqk`` black) and its square (``e4``), in board order: a8, b8, ...,
  h8 down to a1, ..., h1 (rank 8 to rank 1, file a to h, as in a FEN). ``SIDE`` (``white``
  or ``black``) is the side to move, the attacker. So the prompt has 4 + 2 x (pieces on
  the board) tokens: 8 to 68.
- The completion is a space and the solution, attacker and defender alternating, ending
  with the attacker's mating move, so ``2N - 1`` moves. A move is two tokens, its
  from-square and its to-square (``e2 e4``; castling as the king's move, ``e1 g1``), and a
  promotion a third token, the promoted piece as a lower-case letter (``e7 e8 q``, as in
  UCI ``e7e8q``). Joined without spaces, a move's tokens are its UCI string.
- Why squares and not one token per UCI move (the format up to data version 1, whose
  prompt was 64 square contents, ``.`` for empty): a small model sees each of ~1,968 move
  tokens a few times in a training set; it sees each of the 64 square tokens thousands of
  times, as a from-square and as a to-square. And why pieces with their squares in the
  prompt: the square names a move is written in are then words of the prompt (one
  embedding for a square, read and written), so a from-square is a copy of a prompt word
  beside an attacker's piece, where the 64-content board asks the model to learn which
  position stands for which square name; and it is shorter (a Lichess puzzle has 19 pieces
  on average: 42 prompt tokens, not 68), so a training step costs about half (measured on
  one thread, 4x128, batch 16, on a shared 2-core machine: 0.32 s against 0.67 s a step).
  Learning was measured no better at a small budget (2,000 puzzles, 1,800 steps: 0.8% of
  mates in 1 either way; see docs/experiments/chess_budget.py). The promotion letter is a
  token of its own (not ``e8q``, which would add 64 rare to-square tokens) and reuses the
  lower-case piece letters of the board, so the vocabulary is 7 words, 12 piece letters and
  64 squares. A promotion letter can never be a from-square, so the tokens split into moves
  without ambiguity (:func:`split_moves`).
- Castling rights and en passant are not in the prompt. Generated puzzles never have them
  (they are dropped from every candidate position), and a Lichess puzzle is only used if its
  solution still verifies with them dropped (true of every puzzle in the shipped sample);
  the FEN in ``meta`` is the position exactly as the prompt shows it.

Decisions (at the end of the prompt, before the first solution move): ``mate_move`` (the
last, mating move in UCI, e.g. ``d6d5``: the tokens of the move joined) and ``mate_square``
(its destination square), horizon N. ``meta`` holds group ("mate1".."mate3"), source
("generated" or "lichess"), fen, n, the reference line (UCI, space-separated), and the mix
fields that :func:`describe_mix` counts.
"""

from __future__ import annotations

import chess

from tasks.base import Task, make_example

_PIECES = "PNBRQKpnbrqk"
_SIDES = {"white": chess.WHITE, "black": chess.BLACK}
_SQUARES = frozenset(chess.SQUARE_NAMES)
PROMOTIONS = "qrbn"
# The most tokens one move takes (from, to, promotion): a model turn's generation budget.
MOVE_TOKENS = 3


# -- the text format --------------------------------------------------------------------
def encode_prompt(board: chess.Board, n: int) -> str:
    """``mate N SIDE :`` and each piece as its letter and square, a8 to h1 in FEN order (see
    the module docstring)."""
    pieces = []
    for rank in range(7, -1, -1):
        for file in range(8):
            square = chess.square(file, rank)
            piece = board.piece_at(square)
            if piece:
                pieces.append(f"{piece.symbol()} {chess.square_name(square)}")
    side = "white" if board.turn == chess.WHITE else "black"
    return f"mate {n} {side} : " + " ".join(pieces)


def board_from_text(text: str) -> tuple[chess.Board, int, list[str]] | None:
    """Parse a prompt (and any moves after it): the position, N and the tokens after the
    pieces (move tokens, not grouped into moves, not played), or None.

    The pieces end at the first token that is not a piece letter (a move starts with a
    square). The board is the one the prompt shows (no castling rights, no en passant).
    """
    tokens = text.split()
    if len(tokens) < 6 or tokens[0] != "mate" or tokens[2] not in _SIDES or tokens[3] != ":":
        return None
    if tokens[1] not in ("1", "2", "3"):
        return None
    board = chess.Board(None)
    i = 4
    while i < len(tokens) and tokens[i] in _PIECES:
        if i + 1 >= len(tokens) or tokens[i + 1] not in _SQUARES:
            return None
        square = chess.parse_square(tokens[i + 1])
        if board.piece_at(square) is not None:
            return None  # a square named twice
        board.set_piece_at(square, chess.Piece.from_symbol(tokens[i]))
        i += 2
    if i == 4:
        return None
    board.turn = _SIDES[tokens[2]]
    return board, int(tokens[1]), tokens[i:]


def encode_move(uci: str) -> str:
    """A UCI move as text: ``e2e4`` -> ``e2 e4``, ``e7e8q`` -> ``e7 e8 q``."""
    return " ".join(filter(None, (uci[0:2], uci[2:4], uci[4:])))


def encode_line(line: list[str]) -> str:
    """A list of UCI moves as a completion: a space, then the moves' tokens."""
    return " " + " ".join(encode_move(m) for m in line)


def split_moves(tokens: list[str]) -> list[str | None]:
    """Group move tokens into moves, as UCI strings: a from-square and a to-square token,
    and a promotion letter when one follows. Stops at the first group that is not a move
    (a token that is not a square where a square must be, or a lone square at the end) and
    ends the list with None for it. The moves are not checked for legality."""
    moves: list[str | None] = []
    i = 0
    while i < len(tokens):
        if i + 1 >= len(tokens) or tokens[i] not in _SQUARES or tokens[i + 1] not in _SQUARES:
            moves.append(None)
            break
        uci = tokens[i] + tokens[i + 1]
        i += 2
        if i < len(tokens) and tokens[i] in PROMOTIONS:
            uci += tokens[i]
            i += 1
        moves.append(uci)
    return moves


def first_move_text(text: str) -> str | None:
    """The first move of a completion as its UCI string (the tokens joined), None when the
    completion does not start with a move's tokens (a move is this task's unit of output:
    the harness plays one per turn)."""
    moves = split_moves(text.split()[:MOVE_TOKENS])
    return moves[0] if moves else None


def vocabulary() -> list[str]:
    """Every token of this task's texts: keywords, N, sides, the piece letters (also the
    promotion letters) and the 64 square names."""
    return ["mate", "1", "2", "3", "white", "black", ":"] + list(_PIECES) + list(chess.SQUARE_NAMES)


def parse_move(uci: str | None) -> chess.Move | None:
    """A UCI string as a move, or None if it is not one (model output may be anything)."""
    try:
        move = chess.Move.from_uci(uci)
    except (ValueError, TypeError, IndexError, AttributeError):
        return None
    return move if move else None  # the null move "0000" is no move


# -- an example and its description -------------------------------------------------------
def phase_of(board: chess.Board) -> str:
    """Game phase by material: non-pawn material (N, B = 3, R = 5, Q = 9) of both sides
    >= 50 is an opening (the start has 62), <= 26 an endgame, a middlegame in between."""
    material = sum(
        value * chess.popcount(board.pieces_mask(piece, chess.WHITE) | board.pieces_mask(piece, chess.BLACK))
        for piece, value in ((chess.KNIGHT, 3), (chess.BISHOP, 3), (chess.ROOK, 5), (chess.QUEEN, 9))
    )
    return "opening" if material >= 50 else ("endgame" if material <= 26 else "middlegame")


def _first_move_kind(board: chess.Board, uci: str) -> str:
    move = chess.Move.from_uci(uci)
    if board.gives_check(move):
        return "check"
    return "capture" if board.is_capture(move) or move.promotion else "quiet"


def build_example(id: str, board: chess.Board, n: int, line: list[str], meta: dict) -> dict:
    """The example of a puzzle: ``board`` (attacker to move), mate in ``n``, the reference
    ``line`` (UCI); ``meta`` adds its source fields to the standard ones."""
    prompt = encode_prompt(board, n)
    completion = encode_line(line)
    mate = chess.Move.from_uci(line[-1])
    decisions = [
        {"name": "mate_move", "offset": len(prompt), "target": line[-1], "horizon": n},
        {"name": "mate_square", "offset": len(prompt), "target": chess.square_name(mate.to_square), "horizon": n},
    ]
    meta = {
        "group": f"mate{n}", "fen": board.fen(), "n": n, "line": " ".join(line),
        "phase": phase_of(board), "pieces": len(board.piece_map()),
        "first_move": _first_move_kind(board, line[0]), **meta,
    }
    return make_example(id, prompt, completion, decisions, meta)


def describe_mix(dataset) -> dict:
    """What a set of examples holds: counts by N, source, phase (by material), number of
    pieces on the board (bins), attacker colour and kind of first move (check, capture,
    quiet)."""
    out: dict[str, dict] = {"n": {}, "source": {}, "phase": {}, "pieces": {}, "side": {}, "first_move": {}}
    bins = ((2, 8), (9, 16), (17, 24), (25, 32))
    for example in dataset:
        meta = Task.meta(example)
        pieces = meta["pieces"]
        bin_name = next(f"{lo}-{hi}" for lo, hi in bins if pieces <= hi)
        side = "white" if meta["fen"].split()[1] == "w" else "black"
        for field, value in (("n", meta["n"]), ("source", meta["source"]), ("phase", meta["phase"]),
                             ("pieces", bin_name), ("side", side), ("first_move", meta["first_move"])):
            out[field][value] = out[field].get(value, 0) + 1
    order = {name: i for i, name in enumerate(f"{lo}-{hi}" for lo, hi in bins)}
    return {field: dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], 0), str(kv[0]))))
            for field, counts in out.items()}
