"""Chess mate-in-N (N = 1, 2, 3): find the forced mate, playing against a stubborn defender.

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
- The defender's moves in the reference completion are the ones the harness plays in
  :meth:`ChessMateTask.play`: the most stubborn reply (the one that delays mate longest,
  ties broken by the lowest UCI string); the attacker's later moves are its quickest mates
  (lowest UCI among equals; a Lichess puzzle keeps its own moves where they are quickest).

Decisions (at the end of the prompt, before the first solution move): ``mate_move`` (the
last, mating move in UCI) and ``mate_square`` (its destination square), horizon N.
``meta`` holds group ("mate1".."mate3"), source ("generated" or "lichess"), fen, n, the
reference line, and the mix fields that :func:`describe_mix` counts.

Splits: train/dev/test come from the generator (tasks/chess_gen.py), assigned by a hash of
the position FEN, so no position is in two splits; "real" is the shipped Lichess sample
(tasks/data/lichess_mates_dev.csv). The judge of every move is python-chess, through the
exact mate search of tasks/chess_search.py.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Callable, Iterator

import chess

from benchmark.parallel import default_workers
from tasks.base import CompleteFn, Task, cache_dir, make_example, split_of
from tasks.chess_gen import canonical_fen, chunk_puzzles, reference_line, stockfish_path
from tasks.chess_search import MateSolver, forces_mate, verify_line, verify_solution

__all__ = [
    "ChessMateTask", "forces_mate", "verify_solution", "load_lichess_csv", "check_lichess_file",
    "describe_mix", "random_mover", "encode_prompt", "board_from_text", "vocabulary",
]

LICHESS_SAMPLE = Path(__file__).parent / "data" / "lichess_mates_dev.csv"
# Share of each N in a generated split, close to what the generator finds per game
# (about 0.74 mates in 1, 0.30 in 2, 0.14 in 3), so no N keeps it running long after the
# others are full. 12% of the full 20,000 is 2,400 mates in 3.
MIX = {1: 0.62, 2: 0.26, 3: 0.12}
CHUNK_GAMES = 40  # games per unit of work and of cache; any value gives the same stream
_PIECES = "PNBRQKpnbrqk"
_SIDES = {"white": chess.WHITE, "black": chess.BLACK}


# -- text format -----------------------------------------------------------------------
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


def _parse_move(token: str) -> chess.Move | None:
    try:
        move = chess.Move.from_uci(token)
    except (ValueError, TypeError, IndexError):
        return None
    return move if move else None  # the null move "0000" is no move


# -- describing a puzzle -----------------------------------------------------------------
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


def _build_example(id: str, board: chess.Board, n: int, line: list[str], meta: dict) -> dict:
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
        meta = json.loads(example["meta"])
        pieces = meta["pieces"]
        bin_name = next(f"{lo}-{hi}" for lo, hi in bins if pieces <= hi)
        side = "white" if meta["fen"].split()[1] == "w" else "black"
        for field, value in (("n", meta["n"]), ("source", meta["source"]), ("phase", meta["phase"]),
                             ("pieces", bin_name), ("side", side), ("first_move", meta["first_move"])):
            out[field][value] = out[field].get(value, 0) + 1
    order = {name: i for i, name in enumerate(f"{lo}-{hi}" for lo, hi in bins)}
    return {field: dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], 0), str(kv[0]))))
            for field, counts in out.items()}


# -- Lichess puzzles ---------------------------------------------------------------------
def _lichess_puzzle(row: dict) -> tuple[chess.Board, int, list[str]]:
    """The position (after the opponent's move), N and the solution of a Lichess CSV row;
    raises ValueError saying what is wrong."""
    themes = (row.get("Themes") or "").split()
    ns = [int(t[-1]) for t in themes if t in ("mateIn1", "mateIn2", "mateIn3")]
    n = ns[0]
    try:
        board = chess.Board(row.get("FEN") or "")
    except ValueError as error:
        raise ValueError(f"bad FEN ({error})") from None
    moves = (row.get("Moves") or "").split()
    if len(moves) != 2 * n:
        raise ValueError(f"mateIn{n} needs {2 * n} moves (the opponent's and the solution), got {len(moves)}")
    opening = _parse_move(moves[0])
    if opening is None or not board.is_legal(opening):
        raise ValueError(f"the opponent's move {moves[0]} is not legal")
    board.push(opening)
    return board.copy(stack=False), n, moves[1:]


def _mate_rows(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """(PuzzleId, row) of every mateIn1/2/3 row of a Lichess puzzle CSV."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            themes = (row.get("Themes") or "").split()
            if any(t in ("mateIn1", "mateIn2", "mateIn3") for t in themes):
                yield (row.get("PuzzleId") or "").strip() or f"line {number}", row


def load_lichess_csv(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Examples from a Lichess puzzle CSV (PuzzleId, FEN, Moves, ..., Themes, ...).

    Keeps the mateIn1/2/3 rows. The Lichess FEN is the position *before* the opponent's
    move, the first of ``Moves``; the puzzle starts after it. A row that is malformed, or
    whose solution does not verify (with castling and en passant dropped, as the prompt
    shows it), becomes an error string ``"PUZZLEID: reason"`` instead of an example.
    """
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
            examples.append(_build_example(f"lichess-{puzzle_id}", shown, n, line, meta))
        except Exception as error:  # one bad row must never stop the others
            errors.append(f"{puzzle_id}: {error}")
    return examples, errors


def check_lichess_file(path: str | os.PathLike) -> dict:
    """Verify every mateIn1/2/3 puzzle of a Lichess CSV with python-chess, on its own FEN
    (castling and en passant as given): ``{"total", "verified", "by_n", "failures"}``,
    where ``by_n`` maps N to [verified, total] and ``failures`` lists "PUZZLEID: reason"."""
    total, verified, by_n, failures = 0, 0, {}, []
    for puzzle_id, row in _mate_rows(path):
        total += 1
        try:
            board, n, solution = _lichess_puzzle(row)
        except Exception as error:
            failures.append(f"{puzzle_id}: {error}")
            continue
        counts = by_n.setdefault(n, [0, 0])
        counts[1] += 1
        if verify_solution(board.fen(), solution, n):
            verified += 1
            counts[0] += 1
        else:
            failures.append(f"{puzzle_id}: the solution does not force mate in {n}")
    return {"total": total, "verified": verified, "by_n": dict(sorted(by_n.items())), "failures": failures}


@functools.lru_cache(maxsize=1)
def _real_examples() -> list[dict]:
    return load_lichess_csv(LICHESS_SAMPLE)[0]


# -- playing ------------------------------------------------------------------------------
def _walk(board: chess.Board, n: int, tokens: list[str], solver: MateSolver | None):
    """Replay a transcript (attacker first). Yields (index, move or None, mated) for each
    attacker token; checks defender tokens against the stubborn reply when ``solver`` is
    given. Stops at the first token that is unparsable, illegal or wrong."""
    for i, token in enumerate(tokens):
        move = _parse_move(token)
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
            board, _, moves = parsed
            try:
                for token in moves:
                    board.push_uci(token)
            except (ValueError, AssertionError):
                out.append("")
                continue
            legal = sorted(m.uci() for m in board.generate_legal_moves())
            digest = hashlib.sha256(f"{seed}\n{text}".encode()).digest()
            out.append(" " + random.Random(digest).choice(legal) if legal else "")
        return out
    return complete


class ChessMateTask(Task):
    name = "chess-mate"
    # version: the task as scored (bumped when evaluation changes: v2 adds the real puzzles
    # and the random-legal-move baseline to every cell); data_version: the generated puzzles
    # (names the cache, so a scoring change does not regenerate them).
    version = "2"
    data_version = "1"
    extra_success_splits = ("real",)
    description = "Mate in 1, 2 or 3: play the forced mate against the most stubborn defence."
    target_names = ("mate_move", "mate_square")
    max_new_tokens = 2
    # The default run trains on 2,000 puzzles, one pass (a chess step costs four couplet
    # steps, and the small reference barely learns chess on any budget this run can
    # afford). `mesabench tasks generate chess-mate --split train --n 20000` makes a large set.
    sizes = {"full": (2000, 400), "quick": (500, 100)}
    # A dev puzzle costs ten stream puzzles (dev is 10% of positions), so dev = test size.
    dev_factor = 1
    disk_cached = True

    def __init__(self, workers: int | None = None, engine: str | None = None,
                 progress: Callable[[int, int], None] | None = None, chunk_games: int = CHUNK_GAMES) -> None:
        # workers: generation processes (default: 2, or 1 on a one-core machine).
        # engine: "python" (default, reproducible anywhere) or "stockfish" (if installed; a
        # different, cached separately, puzzle stream). progress(found, wanted) is called as
        # generation goes on, for a command line to show.
        self.workers = workers or default_workers()
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
            return datasets.Dataset.from_list(_real_examples()[:n])
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
            examples.append(_build_example(f"chess-{key}", board, record["n"], record["line"].split(), meta))
        return examples

    def stream_folder(self, seed: int) -> Path:
        """Where the chunks of a seed's puzzle stream are cached."""
        return cache_dir() / f"chess-mate-v{self.data_version}-{self.engine}-seed{seed}-stream"

    def vocabulary(self) -> list[str]:
        return vocabulary()

    # -- judging ------------------------------------------------------------------------
    def check(self, example: dict, completion: str) -> bool:
        """A transcript (attacker and defender moves, attacker first) solves the puzzle if
        every move is legal, every defender move is the stubborn reply the harness plays,
        and the attacker's last move mates within N moves."""
        try:
            meta = json.loads(example["meta"])
            board, n = chess.Board(meta["fen"]), int(meta["n"])
            tokens = completion.split()
            solver = MateSolver()
            for i, _, mated in _walk(board, n, tokens, solver):
                if mated:
                    return i == len(tokens) - 1
            return False
        except Exception:  # the verifier never raises on model output
            return False

    def target_from_completion(self, example: dict, completion: str, name: str) -> str | None:
        """From a transcript: the mating move (``mate_move``) or its destination square
        (``mate_square``) if it ends in mate, else the last attacker move or its square."""
        try:
            meta = json.loads(example["meta"])
            board, n = chess.Board(meta["fen"]), int(meta["n"])
            last = None
            for _, move, mated in _walk(board, n, completion.split(), None):
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

    def play(self, examples: list[dict], complete: CompleteFn) -> list[str]:
        """The model plays the attacker: one batched ``complete`` call per turn, the first
        token of each answer is its move; the harness answers with the most stubborn reply.
        Stops at mate, after N attacker moves, or at an illegal or unparsable move."""
        states = []
        for example in examples:
            meta = json.loads(example["meta"])
            states.append({"board": chess.Board(meta["fen"]), "n": int(meta["n"]), "moves": [],
                           "done": False, "prompt": example["prompt"], "solver": MateSolver()})
        while True:
            active = [s for s in states if not s["done"]]
            if not active:
                break
            texts = [s["prompt"] + "".join(" " + m for m in s["moves"]) for s in active]
            answers = list(complete(texts))
            answers += [""] * (len(active) - len(answers))  # a missing answer is no move
            for state, answer in zip(active, answers):
                tokens = answer.split() if isinstance(answer, str) else []
                move = _parse_move(tokens[0]) if tokens else None
                board = state["board"]
                if move is None or not board.is_legal(move):
                    if tokens:
                        state["moves"].append(tokens[0])  # kept so the log shows the mistake
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
        return ["".join(" " + m for m in s["moves"]) for s in states]


# -- the puzzle stream, chunked and cached -------------------------------------------------
def _chunk_job(args: tuple) -> list[dict]:
    return chunk_puzzles(*args)


def _read_chunk(path: Path) -> list[dict] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]
    except (OSError, ValueError):
        return None


def _write_chunk(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    os.replace(tmp, path)  # atomic: an interrupted run never leaves half a chunk


def puzzle_stream(seed: int, engine: str = "python", workers: int = 1, folder: Path | None = None,
                  chunk_games: int = CHUNK_GAMES) -> Iterator[dict]:
    """The puzzle records of a seed, in game order, without end (close it when done).

    Chunks of ``chunk_games`` games are read from ``folder`` when cached there, otherwise
    computed (by ``workers`` processes, a few chunks ahead) and written there.
    """
    pool = None
    pending: dict[int, object] = {}
    index = 0

    def path_of(i: int) -> Path | None:
        return folder / f"games-{i * chunk_games:07d}-{(i + 1) * chunk_games:07d}.jsonl" if folder else None

    def job(i: int) -> tuple:
        return seed, i * chunk_games, (i + 1) * chunk_games, engine

    try:
        while True:
            path = path_of(index)
            records = _read_chunk(path) if path and path.exists() else None
            if records is None:
                if workers > 1:
                    if pool is None:
                        import multiprocessing

                        pool = multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers)
                    for ahead in range(index, index + workers):  # one chunk per worker in flight
                        ahead_path = path_of(ahead)
                        if ahead not in pending and not (ahead_path and ahead_path.exists()):
                            pending[ahead] = pool.apply_async(_chunk_job, (job(ahead),))
                    records = pending.pop(index).get()
                else:
                    records = chunk_puzzles(*job(index))
                if path:
                    _write_chunk(path, records)
            yield from records
            index += 1
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
