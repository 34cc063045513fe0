"""The chess mate-in-N task (N = 1, 2, 3): find the forced mate against a stubborn defender.

The text format is in tasks/chess/text.py. The defender's moves in the reference completion
are the ones the harness plays in :meth:`ChessMateTask.play`: the most stubborn reply (the
one that delays mate longest, ties broken by the lowest UCI string); the attacker's later
moves are its quickest mates (lowest UCI among equals; a Lichess puzzle keeps its own moves
where they are quickest).

Splits: train/dev/test come from the generator (tasks/chess/generate.py), assigned by a hash
of the position FEN, so no position is in two splits; "real" is the shipped Lichess sample
(tasks/chess/lichess.py). The judge of every move is python-chess, through the exact mate
search of tasks/chess/search.py.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
from pathlib import Path
from typing import Callable

import chess

from tasks.base import CheckReport, CompleteFn, Task, cache_dir, split_of, usable_cores
from tasks.chess.generate import stockfish_path
from tasks.chess.lichess import check_lichess_file, sample_examples
from tasks.chess.search import MateSolver
from tasks.chess.stream import CHUNK_GAMES, puzzle_stream
from tasks.chess.text import (MOVE_TOKENS, PROMOTIONS, board_from_text, build_example, encode_move, first_move_text,
                              parse_move, split_moves, vocabulary)

# Share of each N in a generated split, close to what the generator finds per game
# (about 0.74 mates in 1, 0.30 in 2, 0.14 in 3), so no N keeps it running long after the
# others are full. 12% of the full 20,000 is 2,400 mates in 3.
MIX = {1: 0.62, 2: 0.26, 3: 0.12}


# -- playing ------------------------------------------------------------------------------
def _walk(board: chess.Board, n: int, moves: list[str | None], solver: MateSolver | None):
    """Replay a transcript's moves (UCI, as :func:`split_moves` groups its tokens; attacker
    first). Yields (index, move or None, mated) for each attacker move; checks defender
    moves against the stubborn reply when ``solver`` is given. Stops at the first move that
    is unparsable, illegal or wrong."""
    for i, uci in enumerate(moves):
        move = parse_move(uci)
        attacker = i % 2 == 0
        if attacker and i // 2 >= n:
            return
        if move is None or not board.is_legal(move):
            if attacker:
                yield i, move, False
            return
        if not attacker and solver is not None:
            if move != solver.stubborn_reply(board, n - (i + 1) // 2):
                return
        board.push(move)
        if attacker:
            yield i, move, board.is_checkmate()


def random_mover(seed: int) -> CompleteFn:
    """The random-legal-move baseline: answers each text with a random legal move for the
    position it describes (a prompt and the moves so far). The choice depends only on the
    seed and the text, not on the batch or the order of calls."""
    def complete(texts: list[str]) -> list[str]:
        out = []
        for text in texts:
            parsed = board_from_text(text)
            if parsed is None:
                out.append("")
                continue
            board, _, tokens = parsed
            try:
                for uci in split_moves(tokens):
                    board.push_uci(uci)
            except (ValueError, AssertionError, TypeError):
                out.append("")
                continue
            legal = sorted(m.uci() for m in board.generate_legal_moves())
            digest = hashlib.sha256(f"{seed}\n{text}".encode()).digest()
            out.append(" " + encode_move(random.Random(digest).choice(legal)) if legal else "")
        return out
    return complete


class ChessMateTask(Task):
    name = "chess-mate"
    # version: the task as scored (bumped when evaluation changes: v2 adds the real puzzles
    # and the random-legal-move baseline to every cell; v3 writes a move as its from- and
    # to-square tokens); data_version: the built examples (names their cache, so a scoring
    # change does not rebuild them; v2: the square-token text); stream_version: the puzzle
    # stream (positions and lines, no text), the slow part, kept across text changes.
    version = "3"
    data_version = "2"
    stream_version = "1"
    extra_success_splits = ("real",)
    description = "Mate in 1, 2 or 3: play the forced mate against the most stubborn defence."
    target_names = ("mate_move", "mate_square")
    max_words = MOVE_TOKENS  # one move per turn: from, to and a promotion letter
    # The default run trains on 2,000 puzzles, one pass. No budget measured so far teaches
    # the small reference chess (docs/experiments/chess_budget.py), so "long" is "full".
    # `mesabench tasks generate chess-mate --split train --n 20000` makes a large set.
    sizes = {"full": (2000, 400), "quick": (500, 100), "long": (2000, 400)}
    # A dev puzzle costs ten stream puzzles (dev is 10% of positions), so dev = test size.
    dev_factor = 1
    disk_cached = True
    example_tokens = 46  # 4 + 2 per piece (~19 pieces) and 1 to 5 moves of 2 (or 3) tokens


    def __init__(self, workers: int | None = None, engine: str | None = None,
                 progress: Callable[[int, int], None] | None = None, chunk_games: int = CHUNK_GAMES) -> None:
        # workers: generation processes (default: one per usable core).
        # engine: "python" (default, reproducible anywhere) or "stockfish" (if installed; a
        # different, cached separately, puzzle stream). progress(found, wanted) is called as
        # generation goes on, for a command line to show.
        self.workers = workers or usable_cores()
        self.engine = engine or os.environ.get("MESABENCH_CHESS_ENGINE", "python")
        if self.engine not in ("python", "stockfish"):
            raise ValueError(f"unknown chess engine {self.engine!r} (python or stockfish)")
        if self.engine == "stockfish" and stockfish_path() is None:
            raise RuntimeError("engine 'stockfish' asked for, but no stockfish binary found")
        self.progress = progress
        self.chunk_games = chunk_games  # any value gives the same puzzles; small ones suit tests

    # -- data ---------------------------------------------------------------------------
    def baseline_solvers(self, seed: int) -> dict[str, CompleteFn]:
        """A random legal move at every turn: the floor a model's success must beat."""
        return {"random-legal-move": random_mover(seed)}

    def generate(self, split: str, n: int, seed: int):
        """``n`` puzzles of ``split``: train/dev/test generated (mix of N by ``MIX``), or
        "real" for the shipped Lichess sample (all of it when ``n`` exceeds its size)."""
        import datasets  # slow import, only when data is made

        if split == "real":
            return datasets.Dataset.from_list(sample_examples()[:n])
        if split not in ("train", "dev", "test"):
            raise ValueError(f"unknown split {split!r} (train, dev, test or real)")
        folder = cache_dir() / f"chess-mate-v{self.data_version}-{self.engine}-seed{seed}-{split}-{n}"
        if folder.exists():
            return datasets.load_from_disk(str(folder))
        dataset = datasets.Dataset.from_list(self.generated_examples(split, n, seed))
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        bars_were_on = not datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()  # the command line shows its own progress
        try:
            dataset.save_to_disk(str(tmp))
        finally:
            if bars_were_on:
                datasets.enable_progress_bars()
        try:
            os.rename(tmp, folder)  # atomic: a reader never sees half a dataset
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        return datasets.load_from_disk(str(folder))

    def generated_examples(self, split: str, n: int, seed: int) -> list[dict]:
        """The first puzzles of the seed's stream that fall in ``split``, up to ``MIX`` quotas."""
        if n <= 0:
            return []
        quotas = {3: round(n * MIX[3]), 2: round(n * MIX[2])}
        quotas[1] = n - quotas[2] - quotas[3]
        taken: list[dict] = []
        count = {1: 0, 2: 0, 3: 0}
        seen: set[str] = set()
        stream = puzzle_stream(seed, self.engine, self.workers, self.stream_folder(seed), self.chunk_games)
        try:
            for record in stream:
                if len(taken) >= n:
                    break
                fen, k = record["fen"], record["n"]
                if fen in seen:
                    continue
                seen.add(fen)
                if split_of(fen) != split or count[k] >= quotas[k]:
                    continue
                count[k] += 1
                taken.append(record)
                if self.progress:
                    self.progress(len(taken), n)
        finally:
            stream.close()
        examples = []
        for record in taken:
            board = chess.Board(record["fen"])
            key = hashlib.sha256(record["fen"].encode()).hexdigest()[:12]
            meta = {"source": "generated", "game": record["game"], "engine": self.engine}
            examples.append(build_example(f"chess-{key}", board, record["n"], record["line"].split(), meta))
        return examples

    def stream_folder(self, seed: int) -> Path:
        """Where the chunks of a seed's puzzle stream are cached."""
        return cache_dir() / f"chess-mate-v{self.stream_version}-{self.engine}-seed{seed}-stream"

    def vocabulary(self) -> list[str]:
        return vocabulary()

    def check_file(self, path: Path) -> CheckReport:
        """Verify every mate-in-N puzzle of a Lichess puzzle CSV (tasks/chess/lichess.py)."""
        return check_lichess_file(path)

    # -- judging ------------------------------------------------------------------------
    def check(self, example: dict, completion: str) -> bool:
        """A transcript (attacker and defender moves, attacker first) solves the puzzle if
        every move is legal, every defender move is the stubborn reply the harness plays,
        and the attacker's last move mates within N moves."""
        try:
            meta = self.meta(example)
            board, n = chess.Board(meta["fen"]), int(meta["n"])
            moves = self.moves_of(board, completion)
            solver = MateSolver()
            for i, _, mated in _walk(board, n, moves, solver):
                if mated:
                    return i == len(moves) - 1
            return False
        except Exception:  # the verifier never raises on model output
            return False

    def target_from_completion(self, example: dict, completion: str, name: str) -> str | None:
        """From a transcript: the mating move (``mate_move``) or its destination square
        (``mate_square``) if it ends in mate, else the last attacker move or its square."""
        try:
            meta = self.meta(example)
            board, n = chess.Board(meta["fen"]), int(meta["n"])
            last = None
            for _, move, mated in _walk(board, n, self.moves_of(board, completion), None):
                if move is not None:
                    last = move
                if mated:
                    break
        except Exception:
            return None
        if last is None:
            return None
        if name == "mate_move":
            return last.uci()
        if name == "mate_square":
            return chess.square_name(last.to_square)
        raise KeyError(f"unknown target {name!r}; known: {self.target_names}")

    def first_step(self, completion: str, example: dict | None = None) -> str | None:
        """A completion's first move (UCI, its tokens joined): the unit the causal check
        holds fixed and the next-step probe control reads (a move is two or three tokens)."""
        return first_move_text(completion)

    def in_first_step(self, plan: str | None, step: str | None) -> bool:
        """The first move (UCI) decides its own move and its destination square."""
        return step is not None and plan in (step, step[2:4])

    def plan_spans(self, example: dict) -> list[tuple[int, int]]:
        """The words the plan decides, for both targets: the moves before the mating move
        (from the decision point to the mating move's from-square), or the mating move's
        own tokens in a mate in 1 (the default's rule, with a move of two or three words
        in place of one word: a UCI target is never one word of this text)."""
        text = example["prompt"] + example["completion"]
        spans = []
        for d in example["decisions"]:
            start = d["offset"]
            words = list(re.finditer(r"\S+", text[start:]))
            groups, i = [], 0  # (first word, last word) of each move
            while i + 1 < len(words):
                j = i + 2 if i + 2 < len(words) and words[i + 2].group() in PROMOTIONS else i + 1
                groups.append((i, j))
                i = j + 1
            if not groups:
                continue
            first, last = groups[-1]
            if first > 0:
                spans.append((start, start + words[first].start()))
            else:
                spans.append((start + words[first].start(), start + words[last].end()))
        return spans

    # -- how moves are written (the natural face, tasks/chess/natural.py, overrides these) --
    def moves_of(self, board: chess.Board, completion: str) -> list[str | None]:
        """A transcript's moves from ``board``, as UCI strings (`split_moves`)."""
        return split_moves(completion.split())

    def answer_move(self, board: chess.Board, answer: str) -> str | None:
        """The move (UCI) a model's answer plays on ``board``, None if it starts with none."""
        return first_move_text(answer)

    def shown_mistake(self, answer: str, uci: str | None) -> str:
        """What a transcript shows of an answer that is no legal move."""
        return encode_move(uci) if parse_move(uci) is not None else " ".join(answer.split()[:MOVE_TOKENS])

    def transcript(self, start: chess.Board, moves: list[str], attacker_next: bool) -> str:
        """The text of ``moves`` (UCI) played from ``start``, as it follows the prompt;
        ``attacker_next``: the attacker is to move next (a turn's prompt)."""
        return "".join(" " + encode_move(m) for m in moves)

    def play(self, examples: list[dict], complete: CompleteFn) -> list[str]:
        """The model plays the attacker: one batched ``complete`` call per turn, the first
        move of each answer (`answer_move`) is its move; the harness answers with the most
        stubborn reply. Stops at mate, after N attacker moves, or at an illegal or
        unparsable move (kept at the end of the transcript, so the log shows the mistake)."""
        states = []
        for example in examples:
            meta = self.meta(example)
            states.append({"start": chess.Board(meta["fen"]), "board": chess.Board(meta["fen"]),
                           "n": int(meta["n"]), "moves": [], "mistake": "", "done": False,
                           "prompt": example["prompt"], "solver": MateSolver()})
        while True:
            active = [s for s in states if not s["done"]]
            if not active:
                break
            texts = [s["prompt"] + self.transcript(s["start"], s["moves"], True) for s in active]
            answers = list(complete(texts))
            answers += [""] * (len(active) - len(answers))  # a missing answer is no move
            for state, answer in zip(active, answers):
                answer = answer if isinstance(answer, str) else ""
                board = state["board"]
                uci = self.answer_move(board, answer) if answer.split() else None
                move = parse_move(uci)
                if move is None or not board.is_legal(move):
                    if answer.split():
                        state["mistake"] = " " + self.shown_mistake(answer, uci)
                    state["done"] = True
                    continue
                board.push(move)
                state["moves"].append(move.uci())
                made = (len(state["moves"]) + 1) // 2
                if board.is_checkmate() or made >= state["n"] or board.is_game_over(claim_draw=False):
                    state["done"] = True
                    continue
                reply = state["solver"].stubborn_reply(board, state["n"] - made)
                board.push(reply)
                state["moves"].append(reply.uci())
        return [self.transcript(s["start"], s["moves"], False) + s["mistake"] for s in states]
