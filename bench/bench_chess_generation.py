"""How fast the chess-mate generator makes puzzles: puzzles/s by N, with and without stockfish.

    python bench/bench_chess_generation.py                 # 200 games per engine, ~1 min
    python bench/bench_chess_generation.py --games 600 --baseline --quick

For each engine ("python", and "stockfish" when it is installed) it plays ``--games`` games
of the generator in one process and reports puzzles per second by N (wall clock; for python
also per CPU second, the number that does not depend on what else the machine runs), the
yield per game, and the time the full and quick sizes would take on two workers.

``--baseline`` measures the obvious alternative as a ratio: positions from random play,
each searched in full for a mate in <= 3. ``--quick`` times the real thing: the quick
train, dev and test sets from scratch with two workers, in a temporary cache.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chess  # noqa: E402

from tasks.chess.generate import chunk_puzzles, stockfish_path  # noqa: E402
from tasks.chess.task import MIX, ChessMateTask  # noqa: E402
from tasks.chess.text import describe_mix  # noqa: E402

SPLIT_SHARE = {"train": 0.8, "dev": 0.1, "test": 0.1}


def measure(engine: str, games: int, seed: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    records = chunk_puzzles(seed, 0, games, engine)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    counts = collections.Counter(r["n"] for r in records)
    return {"engine": engine, "games": games, "wall": wall, "cpu": cpu, "counts": counts}


def games_needed(counts: collections.Counter, games: int, train: int, evaluation: int) -> float:
    """Games of the stream needed to fill train, dev and test at MIX (the scarcest N decides)."""
    need = 0.0
    for split, size in (("train", train), ("dev", evaluation), ("test", evaluation)):
        for n, share in MIX.items():
            per_game = counts[n] / games * SPLIT_SHARE[split]
            need = max(need, share * size / per_game if per_game else float("inf"))
    return need


def report(result: dict) -> None:
    counts, games, wall, cpu = result["counts"], result["games"], result["wall"], result["cpu"]
    engine = result["engine"]
    print(f"\n== engine {engine}: {games} games, {sum(counts.values())} puzzles, "
          f"wall {wall:.1f} s, cpu (this process) {cpu:.1f} s")
    for n in (1, 2, 3):
        line = f"  mate in {n}: {counts[n]:5d} puzzles  {counts[n] / games:.3f}/game  {counts[n] / wall:6.2f}/s wall"
        if engine == "python":
            line += f"  {counts[n] / cpu:6.2f}/s cpu"
        print(line)
    total = sum(counts.values())
    print(f"  all:         {total:5d} puzzles  {total / wall:6.2f}/s wall" +
          (f"  {total / cpu:6.2f}/s cpu" if engine == "python" else ""))
    per_game = wall / games
    for name, (train, evaluation) in ChessMateTask.sizes.items():
        need = games_needed(counts, games, train, evaluation)
        print(f"  {name} ({train} train + 2 x {evaluation} eval): ~{need:,.0f} games, "
              f"~{need * per_game / 2 / 60:.1f} min on 2 workers at this machine's current speed")


def baseline(seconds: float, seed: int) -> None:
    """Random play and a full mate-in-<=3 search of every position: puzzles per second."""
    rng = random.Random(seed)
    found, positions, start = collections.Counter(), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        board = chess.Board()
        for _ in range(rng.randrange(10, 120)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
        if board.is_game_over():
            continue
        board.castling_rights, board.ep_square = chess.BB_EMPTY, None
        positions += 1
        # The full search, not the checks-only hint: this is what "just search every
        # position" costs.
        from tasks.chess.search import MateSolver
        solver = MateSolver()
        n = next((k for k in (1, 2, 3) if solver.mate_in(board, k)), None)
        if n and len(solver.winning_moves(board, n, limit=2)) == 1:
            found[n] += 1
    elapsed = time.perf_counter() - start
    total = sum(found.values())
    print(f"\n== baseline: random play + full search: {positions} positions in {elapsed:.0f} s, "
          f"{dict(sorted(found.items()))} puzzles, {total / elapsed:.3f} puzzles/s")
    return total / elapsed


def quick_run(engine: str) -> None:
    """The quick sizes from scratch, two workers, fresh cache: the time a user waits."""
    train, evaluation = ChessMateTask.sizes["quick"]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MESABENCH_CACHE"] = cache
        task = ChessMateTask(workers=2, engine=engine)
        start, cpu = time.perf_counter(), _cpu()
        for split, size in (("train", train), ("dev", evaluation), ("test", evaluation)):
            t = time.perf_counter()
            dataset = task.generate(split, size, seed=0)
            print(f"  {split} {size}: {time.perf_counter() - t:.1f} s  {describe_mix(dataset)}")
        wall, cpu = time.perf_counter() - start, _cpu() - cpu
        games = len(list(task.stream_folder(0).glob("*.jsonl"))) * task.chunk_games
        print(f"== quick sets from scratch ({engine}, 2 workers): {wall:.1f} s wall, {cpu:.0f} cpu-s "
              f"in all processes ({games} games), so ~{cpu / 2:.0f} s on two idle cores")


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", default="python,stockfish")
    parser.add_argument("--baseline", action="store_true", help="also time random play + full search")
    parser.add_argument("--quick", action="store_true", help="also time the quick sets from scratch")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, stockfish: {stockfish_path()}")
    rates = {}
    for engine in args.engine.split(","):
        if engine == "stockfish" and stockfish_path() is None:
            print("\n== engine stockfish: not installed (apt-get install stockfish), skipped")
            continue
        result = measure(engine, args.games, args.seed)
        report(result)
        rates[engine] = sum(result["counts"].values()) / result["wall"]
    if "python" in rates and "stockfish" in rates:
        print(f"\nstockfish / python, puzzles per wall second: {rates['stockfish'] / rates['python']:.2f}x")
    if args.baseline:
        base = baseline(60.0, args.seed)
        if "python" in rates and base:
            print(f"generator / baseline: {rates['python'] / base:.0f}x more puzzles per second")
    if args.quick:
        quick_run("python")


if __name__ == "__main__":
    main()
