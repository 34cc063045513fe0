"""Chess mate-in-N, natural face: FEN and standard algebraic notation, few-shot.

The word-level face (tasks/chess/text.py: ``mate 2 black : k h8 ...`` and moves as square
tokens) is what the references train on; a pretrained model has read chess as FEN and PGN.
This face asks for the same puzzles, judged the same way (the harness plays the most
stubborn defence, the attacker must mate within N), in that notation:

    Find the forced checkmate. Moves are in standard algebraic notation.

    FEN: 6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1
    White to move and mate in 1.
    Moves: 1. Rd8#

    ... (3 solved exemplars in all)

    FEN: 7k/6p1/4R2p/3r4/5BnP/8/5PP1/6K1 b - - 0 1
    Black to move and mate in 2.
    Moves: 1...
    ^ prompt ends here (the decision point)
     Rd1+ 2. Re1 Rxe1#         <- the reference completion

- **Items** are chess-mate's puzzles (its generated splits and the Lichess "real" split),
  re-written; the FEN's move counters are reset (0 1) so the moves are numbered from 1.
- **Few-shot**: each item's exemplars (`FEWSHOT`) are drawn, by the item's id, from the first
  `POOL` generated *train* puzzles (never scored), never the item's own position.
- **Play**: one model turn per attacker move, as in chess-mate; a turn's prompt is the item
  and the game so far in PGN, ending with the attacker's move number where it has one
  (``... Kg8 2.``), so the model's first word is its move. That word is read as SAN (check
  marks optional) or as UCI (``e2e4``); the harness writes every move in SAN.
- **Verifier and targets**: chess-mate's (`ChessMateTask.check`), on a transcript read the
  same way; ``mate_move`` (UCI) and ``mate_square`` at the end of the prompt.
"""

from __future__ import annotations

import functools
import random
import re

import chess

from tasks.base import CompleteFn, make_example
from tasks.chess.task import ChessMateTask

VERSION = "1"
FEWSHOT = 3  # exemplars before each item (not chosen by measurement: no pretrained model here)
POOL = 24  # generated train puzzles the exemplars come from (generating puzzles is slow)
INSTRUCTION = "Find the forced checkmate. Moves are in standard algebraic notation."
_NUMBER = re.compile(r"^\d+\.+")  # "2.", "1...", or the number glued to a move: "2.Qf7#"


def numbered(fen: str) -> chess.Board:
    """The board of ``fen`` with its move counters reset, so its moves are numbered from 1."""
    board = chess.Board(fen)
    board.halfmove_clock, board.fullmove_number = 0, 1
    return board


def read_move(board: chess.Board, word: str) -> str | None:
    """A word as a move on ``board`` (UCI): SAN if it is a legal SAN move, else UCI as
    written (legal or not, so the transcript shows an illegal try), else None."""
    try:
        return board.parse_san(word).uci()
    except ValueError:
        pass
    try:
        move = chess.Move.from_uci(word)
    except ValueError:
        return None
    return move.uci() if move else None


def move_words(completion: str) -> list[str]:
    """A transcript's words without move numbers."""
    out = []
    for word in completion.split():
        word = _NUMBER.sub("", word)
        if word:
            out.append(word)
    return out


class NaturalChessMateTask(ChessMateTask):
    name = "chess-mate-natural"
    version = VERSION
    description = "Mate in 1, 2 or 3 from a FEN, moves in SAN, few-shot (for pretrained models)."
    face = "natural"
    max_words = 2  # a move, or a move number and a move; the line's end stops it sooner
    sizes = {"full": (0, 400), "quick": (0, 100), "long": (0, 400)}  # no training set: nobody trains on it
    example_tokens = 84  # a FEN is one word; 4 puzzles of ~20 words

    def __init__(self, fewshot: int = FEWSHOT, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fewshot = fewshot

    # -- data ---------------------------------------------------------------------------
    @staticmethod
    def puzzle_text(fen: str, n: int) -> str:
        """A puzzle's own lines, up to the first move number."""
        board = numbered(fen)
        side = "White" if board.turn == chess.WHITE else "Black"
        return f"FEN: {board.fen()}\n{side} to move and mate in {n}.\nMoves: {'1.' if board.turn == chess.WHITE else '1...'}"

    @functools.lru_cache(maxsize=4)
    def _pool(self, seed: int) -> tuple[dict, ...]:
        return tuple(dict(row) for row in super().generate("train", POOL, seed))

    def _example(self, word_face: dict, seed: int) -> dict:
        meta = self.meta(word_face)
        fen, n, line = meta["fen"], int(meta["n"]), meta["line"].split()
        shots = [ex for ex in self._pool(seed) if self.meta(ex)["fen"] != fen]
        chosen = random.Random(f"{word_face['id']}-{seed}").sample(shots, self.fewshot)
        solved = []
        for ex in chosen:
            m = self.meta(ex)
            solved.append(self.puzzle_text(m["fen"], int(m["n"]))
                          + self.transcript(chess.Board(m["fen"]), m["line"].split(), False))
        prompt = INSTRUCTION + "\n\n" + "".join(s + "\n\n" for s in solved) + self.puzzle_text(fen, n)
        decisions = [dict(d, offset=len(prompt)) for d in word_face["decisions"]]
        return make_example(word_face["id"], prompt, self.transcript(chess.Board(fen), line, False),
                            decisions, dict(meta, fewshot=self.fewshot))

    def generate(self, split: str, n: int, seed: int):
        """chess-mate's ``n`` puzzles of ``split``, in this face's text."""
        import datasets

        rows = [self._example(dict(row), seed) for row in super().generate(split, n, seed)]
        return datasets.Dataset.from_list(rows)

    def vocabulary(self) -> list[str]:
        """None: no word-level reference is trained on this face."""
        return []

    def baseline_solvers(self, seed: int) -> dict[str, CompleteFn]:
        """A random legal move at every turn, in SAN: the floor a model's success must beat."""
        def complete(texts: list[str]) -> list[str]:
            out = []
            for text in texts:
                board = self.board_of_turn(text)
                legal = sorted(board.san(m) for m in board.legal_moves) if board else []
                out.append(" " + random.Random(f"{seed}\n{text}").choice(legal) if legal else "")
            return out
        return {"random-legal-move": complete}

    def board_of_turn(self, text: str) -> chess.Board | None:
        """The position a turn's prompt ends in (its last FEN and the moves after it)."""
        fen_at = text.rfind("FEN: ")
        moves_at = text.find("Moves:", fen_at)
        if fen_at < 0 or moves_at < 0:
            return None
        try:
            board = chess.Board(text[fen_at + 5:text.index("\n", fen_at)])
        except ValueError:
            return None
        for uci in self.moves_of(board, text[moves_at + len("Moves:"):]):
            if uci is None or not board.is_legal(chess.Move.from_uci(uci)):
                return None
            board.push_uci(uci)
        return board

    # -- how moves are written ------------------------------------------------------------
    def moves_of(self, board: chess.Board, completion: str) -> list[str | None]:
        """A PGN-style transcript's moves (UCI), read move by move from ``board``; ends with
        the first word that is no legal move (its UCI if it reads as one, else None)."""
        board, out = board.copy(), []
        for word in move_words(completion):
            uci = read_move(board, word)
            out.append(uci)
            if uci is None or not board.is_legal(chess.Move.from_uci(uci)):
                break
            board.push_uci(uci)
        return out

    def answer_move(self, board: chess.Board, answer: str) -> str | None:
        words = move_words(answer)
        return read_move(board, words[0]) if words else None

    def shown_mistake(self, answer: str, uci: str | None) -> str:
        words = move_words(answer)
        return words[0] if words else ""

    def transcript(self, start: chess.Board, moves: list[str], attacker_next: bool) -> str:
        """SAN with move numbers after the prompt's own "1." or "1...": " Rd1+ 2. Re1 Rxe1#";
        a turn's prompt ends with the attacker's next number where White attacks (" 2.")."""
        board, parts = numbered(start.fen()), []
        for i, uci in enumerate(moves):
            if i > 0 and board.turn == chess.WHITE:
                parts.append(f"{board.fullmove_number}.")
            move = chess.Move.from_uci(uci)
            parts.append(board.san(move))
            board.push(move)
        if attacker_next and moves and board.turn == chess.WHITE:
            parts.append(f"{board.fullmove_number}.")
        return "".join(" " + p for p in parts)

    def first_step(self, completion: str, example: dict | None = None) -> str | None:
        """A completion's first move in UCI, as the targets are written (the causal check
        compares the two); without the example (no board to read SAN on), as written."""
        words = move_words(completion)
        if not words:
            return None
        if example is None:
            return words[0].rstrip("+#")
        return self.answer_move(chess.Board(self.meta(example)["fen"]), completion)

    def plan_spans(self, example: dict) -> list[tuple[int, int]]:
        """The moves before the mating move (from the decision point to it), or the mating
        move itself in a mate in 1: one span, for both targets (they share the point)."""
        text = example["prompt"] + example["completion"]
        start = len(example["prompt"])
        moves = [m for m in re.finditer(r"\S+", text[start:]) if not _NUMBER.fullmatch(m.group())]
        if not moves:
            return []
        last = moves[-1]
        span = (start, start + last.start()) if len(moves) > 1 else (start + last.start(), start + last.end())
        return [span for _ in example["decisions"]]
