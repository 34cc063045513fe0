"""The text of a chess example, and what its meta holds.

Text format (space-separated tokens, so a word-level tokenizer encodes it exactly). A mate
in 2 for black (knight to g4 check, king e4, pawn d5 mate):

    prompt      mate 2 black : r . . . k b . r . . . . . p p p . p . p p . . n p . p . . . .
                P . . . P . P . q . . P P K . . . P P . B . . P . R N . b . B N .
    completion   h6g4 e3e4 d6d5

(the prompt is one line; it is wrapped here).

- The prompt is ``mate N SIDE :`` followed by the board, one token per square from a8, b8,
  ..., h8 down to a1, ..., h1 (rank 8 to rank 1, file a to h as in a FEN). A square token is
  a FEN piece letter (``PNBRQK`` white, ``pnbrqk`` black) or ``.`` when empty. ``SIDE``
  (``white`` or ``black``) is the side to move, the attacker. So the prompt always has
  4 + 64 tokens.
- The completion is a space and the solution in UCI, one token per move (``e2e4``, a
  promotion ``e7e8q``, castling as the king's move ``e1g1``): attacker and defender
  alternating, ending with the attacker's mating move, so ``2N - 1`` moves.
- Castling rights and en passant are not in the prompt. Generated puzzles never have them
  (they are dropped from every candidate position), and a Lichess puzzle is only used if its
  solution still verifies with them dropped (true of every puzzle in the shipped sample);
  the FEN in ``meta`` is the position exactly as the prompt shows it.

Decisions (at the end of the prompt, before the first solution move): ``mate_move`` (the
last, mating move in UCI) and ``mate_square`` (its destination square), horizon N.
``meta`` holds group ("mate1".."mate3"), source ("generated" or "lichess"), fen, n, the
reference line, and the mix fields that :func:`describe_mix` counts.
"""

from __future__ import annotations

import chess

from tasks.base import Task, make_example

_PIECES = "PNBRQKpnbrqk"
_SIDES = {"white": chess.WHITE, "black": chess.BLACK}


# -- the text format --------------------------------------------------------------------
def encode_prompt(board: chess.Board, n: int) -> str:
    """``mate N SIDE :`` and the 64 squares, rank 8 to rank 1 (see the module docstring)."""
    squares = []
    for rank in range(7, -1, -1):
        for file in range(8):
            piece = board.piece_at(chess.square(file, rank))
            squares.append(piece.symbol() if piece else ".")
    side = "white" if board.turn == chess.WHITE else "black"
    return f"mate {n} {side} : " + " ".join(squares)


def board_from_text(text: str) -> tuple[chess.Board, int, list[str]] | None:
    """Parse a prompt (and any moves after it): the position, N and the move tokens, or None.

    The board is the one the prompt shows (no castling rights, no en passant); the moves are
    returned as they are, not played.
    """
    tokens = text.split()
    if len(tokens) < 68 or tokens[0] != "mate" or tokens[2] not in _SIDES or tokens[3] != ":":
        return None
    if tokens[1] not in ("1", "2", "3"):
        return None
    board = chess.Board(None)
    for i, token in enumerate(tokens[4:68]):
        if token == ".":
            continue
        if token not in _PIECES:
            return None
        board.set_piece_at(chess.square(i % 8, 7 - i // 8), chess.Piece.from_symbol(token))
    board.turn = _SIDES[tokens[2]]
    return board, int(tokens[1]), tokens[68:]


def all_uci_moves() -> list[str]:
    """Every UCI string a legal move can have: queen-like and knight-like square pairs
    (which covers pawns, kings and castling) and the promotions, sorted."""
    moves = set()
    for a in chess.SQUARES:
        reach = chess.BB_KNIGHT_ATTACKS[a] | chess.BB_DIAG_ATTACKS[a][0] | chess.BB_RANK_ATTACKS[a][0] \
            | chess.BB_FILE_ATTACKS[a][0]
        for b in chess.scan_forward(reach):
            moves.add(chess.Move(a, b).uci())
    for file in range(8):
        for to_file in (file - 1, file, file + 1):
            if 0 <= to_file < 8:
                for piece in "qrbn":
                    moves.add(f"{chess.FILE_NAMES[file]}7{chess.FILE_NAMES[to_file]}8{piece}")
                    moves.add(f"{chess.FILE_NAMES[file]}2{chess.FILE_NAMES[to_file]}1{piece}")
    return sorted(moves)


def vocabulary() -> list[str]:
    """Every token of this task's texts: keywords, N, sides, square contents, UCI moves."""
    return ["mate", "1", "2", "3", "white", "black", ":", "."] + list(_PIECES) + all_uci_moves()


def parse_move(token: str) -> chess.Move | None:
    """A UCI token as a move, or None if it is not one (model output may be anything)."""
    try:
        move = chess.Move.from_uci(token)
    except (ValueError, TypeError, IndexError):
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
    completion = " " + " ".join(line)
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
